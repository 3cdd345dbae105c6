"""A sweep's trials never outlive it, and a rerun waits for a trial folder another
process still holds instead of recording the trial failed."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from conftest import SWEEP_BASE, write_config
from trainer.cli import main

BASE = SWEEP_BASE.replace("epochs: 2", "epochs: EPOCHS")

ONE = """\
name: one
base: base.yaml
search:
  grid:
    compile.optimizer.Adam.lr: [0.01]
seeds: [0]
metric: val_accuracy
mode: max
"""

#: starts a run in a folder as `trainer fit` does (claim, lock) with the project's own
#: API and holds its lock for argv[2] seconds (or until killed)
HOLD = """\
import sys, time
from trainer.store.runs import Run
with Run(sys.argv[1]).claim().lock():
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the death signal (prctl) is Linux's")


def alive(pid):
    """Whether ``pid`` runs (a zombie waiting for its reaper has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def poll(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    return condition()


def one_trial(workdir, epochs):
    write_config(workdir, BASE.replace("EPOCHS", str(epochs)), "base.yaml")
    path = write_config(workdir, ONE, "sweep.yaml")
    from trainer.sweeps.spec import load
    from trainer.sweeps.trials import expand

    (trial,) = expand(load(path))
    return path, trial.id


def ledger(root):
    with open(root / "one" / "ledger.csv") as f:
        return list(csv.DictReader(f))


def hold_lock(folder, seconds):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


@linux_only
def test_trial_dies_with_a_killed_sweep(workdir):
    """SIGKILL the sweep while its trial trains: the trial (pid in its .lock) ends within
    seconds, by SIGTERM, so it records `interrupted` and keeps its checkpoint."""
    path, trial = one_trial(workdir, 100000)  # would train for many minutes
    folder = workdir / "runs" / "one" / trial
    sweep = subprocess.Popen([sys.executable, "-m", "trainer", "sweep", str(path),
                              "--runs-root", str(workdir / "runs")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid = None
    try:
        def training():
            try:
                meta = json.loads((folder / "run.json").read_text())
                text = (folder / ".lock").read_text().strip()
            except (OSError, ValueError):
                return None
            return int(text) if meta.get("status") == "running" and text.isdigit() \
                and (folder / "checkpoints" / "last.h5").exists() else None

        pid = poll(training)
        assert pid, "the trial never started training"
        sweep.kill()
        sweep.wait()
        assert poll(lambda: not alive(pid), timeout=30), \
            f"the trial (pid {pid}) outlived the killed sweep"
        meta = json.loads((folder / "run.json").read_text())
        assert meta["status"] == "interrupted"
        assert (folder / "checkpoints" / "last.h5").is_file()
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
        if pid and alive(pid):
            os.kill(pid, signal.SIGKILL)


@linux_only
def test_trial_started_after_its_sweep_died_runs_nothing(workdir):
    """The race: a sweep that dies before its trial asked for the death signal. The
    trial finds another parent and stops at once (exit 143), leaving no run."""
    write_config(workdir, BASE.replace("EPOCHS", "2"), "base.yaml")
    env = {**os.environ, "TRAINER_SWEEP_PID": str(os.getpid() + 10**7)}  # not its parent
    r = subprocess.run([sys.executable, "-m", "trainer", "fit", str(workdir / "base.yaml"),
                        "--run-dir", str(workdir / "run")], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 143, r.stderr
    assert "the sweep that started this trial" in r.stderr and "Traceback" not in r.stderr
    assert not (workdir / "run").exists()


def test_rerun_waits_for_a_held_trial_folder(workdir):
    """The trial's folder is locked by another live process for ~2 s: the sweep waits,
    then runs the trial; it is never recorded failed."""
    path, trial = one_trial(workdir, 2)
    holder = hold_lock(workdir / "runs" / "one" / trial, 2)
    try:
        r = CliRunner().invoke(main, ["sweep", str(path), "--runs-root",
                                      str(workdir / "runs")])
    finally:
        holder.kill()
        holder.wait()
    assert r.exit_code == 0, r.output
    (row,) = ledger(workdir / "runs")
    assert row["status"] == "completed" and float(row["val_accuracy"]) > 0, row
    assert f"waiting for its run folder, in use by pid {holder.pid}" in r.output


def test_trial_folder_held_past_the_timeout_is_in_use_not_failed(workdir):
    path, trial = one_trial(workdir, 2)
    holder = hold_lock(workdir / "runs" / "one" / trial, 120)
    try:
        r = CliRunner().invoke(main, ["sweep", str(path), "--runs-root",
                                      str(workdir / "runs"), "--in-use-timeout", "0.5",
                                      "--json"])
    finally:
        holder.kill()
        holder.wait()
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["counts"] == {"in use": 1}
    (row,) = ledger(workdir / "runs")
    assert row["status"] == "in use"
    assert f"pid {holder.pid} still held its run folder after 0.5 s" in row["error"]
    assert not (workdir / "runs" / "one" / trial / "run.json").exists()  # nothing ran


THREE = ONE.replace("name: one", "name: three").replace("[0.01]", "[0.01, 0.02, 0.03]")


def three_trials(workdir, epochs):
    write_config(workdir, BASE.replace("EPOCHS", str(epochs)), "base.yaml")
    path = write_config(workdir, THREE, "sweep.yaml")
    from trainer.sweeps.spec import load
    from trainer.sweeps.trials import expand

    return path, [t.id for t in expand(load(path))]


def start_sweep(path, workdir, *args):
    """`trainer sweep` in a process of its own, its output in files (read while it runs)."""
    out = open(workdir / "sweep.out", "w")
    err = open(workdir / "sweep.err", "w")
    # SIGINT as at a terminal: a runner started in the background ignores it, and a
    # child inherits that (Python then installs no KeyboardInterrupt handler)
    proc = subprocess.Popen([sys.executable, "-m", "trainer", "sweep", str(path),
                             "--runs-root", str(workdir / "runs"), *args],
                            stdout=out, stderr=err, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    out.close(), err.close()
    return proc


def trial_pids(runs):
    """The pids of `trainer fit` processes whose command line names ``runs``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = (open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ")
                       .decode(errors="replace"))
            except OSError:
                continue
            if " fit " in cmd and str(runs) in cmd and alive(int(entry)):
                pids.append(int(entry))
    return pids


@linux_only
def test_ctrl_c_stops_the_sweep_and_its_trial_resumably(workdir):
    """Ctrl-C on the sweep (SIGINT to its process alone, as `kill -INT`; a terminal's
    reaches the trials through the sweep too): the running trial stops with its
    checkpoint (`interrupted`, not `failed`), no further trial starts, the sweep exits
    130 with one line and no traceback; the rerun finishes every trial."""
    # long enough (~2 s) for the Ctrl-C to land inside the first trial; the rerun then
    # trains all three to the end (300 epochs took ~25 s of the suite's budget)
    path, ids = three_trials(workdir, 100)
    runs = workdir / "runs"
    sweep = start_sweep(path, workdir)
    try:
        assert poll(lambda: (runs / "three" / ids[0] / "checkpoints" / "last.h5").exists()), \
            "the first trial never wrote a checkpoint"
        sweep.send_signal(signal.SIGINT)
        sweep.wait(timeout=60)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    err = (workdir / "sweep.err").read_text()
    assert sweep.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err, err
    assert poll(lambda: not trial_pids(runs), timeout=30), "a trial outlived the Ctrl-C"
    with open(runs / "three" / "ledger.csv") as f:
        rows = {r["trial"]: r for r in csv.DictReader(f)}
    assert [rows[t]["status"] for t in ids] == ["interrupted", "pending", "pending"], rows
    assert (runs / "three" / ids[0] / "checkpoints" / "last.h5").is_file()
    r = CliRunner().invoke(main, ["sweep", str(path), "--runs-root", str(runs), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["counts"] == {"completed": 3}


@linux_only
def test_ctrl_c_ends_the_wait_for_a_held_trial_folder(workdir):
    """Ctrl-C while the sweep waits for a trial folder another process holds: the sweep
    ends at once (exit 130), the trial not run, not recorded failed."""
    path, trial = one_trial(workdir, 2)
    holder = hold_lock(workdir / "runs" / "one" / trial, 120)
    sweep = start_sweep(path, workdir)
    try:
        assert poll(lambda: "waiting" in (workdir / "sweep.out").read_text()), \
            "the sweep never said it waits"
        sweep.send_signal(signal.SIGINT)
        sweep.wait(timeout=30)
    finally:
        for proc in (sweep, holder):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    err = (workdir / "sweep.err").read_text()
    assert sweep.returncode == 130, err
    assert "Traceback" not in err, err
    assert not (workdir / "runs" / "one" / trial / "run.json").exists()
    assert ledger(workdir / "runs")[0]["status"] == "pending"
