"""Run trials as `trainer fit` subprocesses, keep the ledger, summarise."""

import concurrent.futures
import contextlib
import csv
import functools
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from trainer.errors import InterruptedRun
from trainer.fileio import write_text
from trainer.runfiles import TRIAL
from trainer.store.runs import IN_USE, Run
from trainer.sweeps.parent import child_env


#: what a rerun reports for a trial it found finished (the ledger keeps "completed")
ALREADY_DONE = "skipped (already done)"
#: a trial not run because another process held its run folder (see run_trial)
IN_USE_STATUS = "in use"
#: a trial not started because the sweep was stopping (Ctrl-C, --fail-fast)
SKIPPED = "skipped"
#: seconds a trial waits for its run folder by default (`trainer sweep --in-use-timeout`)
IN_USE_TIMEOUT = 300.0
POLL = 0.2  # seconds between two looks at a run folder's lock (or at the workers)


def sweep_dir(sweep, runs_root="runs"):
    return Path(runs_root) / sweep.name


def trial_status(run_dir):
    """(status, final metrics) from a trial's run.json; 'pending' when it never ran."""
    from trainer.errors import DataError
    from trainer.store.runs import read_run_json

    meta = Path(run_dir) / "run.json"
    if not meta.exists():
        return "pending", {}
    try:
        data = read_run_json(meta)
    except DataError:
        return "unreadable", {}
    metrics = data.get("final_metrics")
    return str(data.get("status", "unknown")), metrics if isinstance(metrics, dict) else {}


def thread_env(workers):
    """BLAS, Numba and engine threads per worker, so N workers share the cores, not
    fight."""
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS", "TRAINER_NUM_THREADS"):
        env[var] = str(threads)
    return env


def run_trial(sweep, trial, run_dir, env, in_use_timeout=IN_USE_TIMEOUT, notify=None,
              stop=None):
    """One trial in its own process (which dies with this one: parent.die_with_sweep).
    Returns (status, metrics, error text).

    A run folder whose lock another process holds (the trial of a killed sweep still
    stopping, or the same trial run by another machine's sweep) is waited for, up to
    ``in_use_timeout`` seconds (``notify``, if given, is called with a note naming the
    holder's pid when the wait begins); the trial then goes on from what that process
    left: done if it completed, resumed from its checkpoint if it stopped. If the folder
    is still in use then, the trial is not run and the status is ``in use`` (never
    ``failed``: the trial has not failed, and a rerun of the sweep picks it up).

    ``stop`` (a ``Stop``): the sweep's; once set, a trial not started yet (or still
    waiting) is ``skipped``, and one the sweep's Ctrl-C stopped keeps its run.json's
    status (``interrupted``, resumable), not ``failed``."""
    stop = Stop() if stop is None else stop

    def waiting(pid):
        if notify is not None:
            notify(f"for its run folder, in use by pid {pid} (up to {in_use_timeout:g} s)")

    deadline = time.monotonic() + in_use_timeout
    while True:
        holder = wait_until_free(run_dir, deadline, waiting, stop)
        if stop.is_set():
            return SKIPPED, {}, ""
        if holder is not None:
            return IN_USE_STATUS, {}, (f"pid {holder} still held its run folder after "
                                       f"{in_use_timeout:g} s; not run (rerun the sweep "
                                       f"once that process has ended)")
        status, metrics = trial_status(run_dir)
        if status == "completed":
            return status, metrics, ""
        proc = stop.run(trial_command(sweep, trial, run_dir, status), child_env(env))
        if proc is None:
            return SKIPPED, {}, ""
        if stop.interrupted and proc.returncode not in (0, 4):
            # stopped by the sweep's Ctrl-C (at any moment, start-up too): what its
            # run.json says (interrupted, resumable; pending if it never began)
            return (*trial_status(run_dir), "")
        if proc.returncode not in (0, 4) and IN_USE in proc.stderr:
            if time.monotonic() < deadline:
                continue  # another process took the lock after we looked: wait for it
            return IN_USE_STATUS, {}, (f"another process took its run folder as the wait "
                                       f"of {in_use_timeout:g} s ended; not run (rerun the "
                                       f"sweep once that process has ended)")
        status, metrics = trial_status(run_dir)
        error = ""
        if proc.returncode not in (0, 4):  # 4: the base config's own gate; metrics are valid
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            error = lines[-1] if lines else f"exit code {proc.returncode}"
            status = "failed"
        return status, metrics, error


def trial_command(sweep, trial, run_dir, status):
    """The `trainer fit` command line for a trial whose run.json says ``status``: a
    resume when a stopped attempt left a checkpoint, else a new run over whatever a
    failed or killed attempt left (``--force``)."""
    resumable = status in ("interrupted", "running", "failed") and (
        run_dir / "checkpoints" / "last.h5").exists()
    write_trial_file(trial, run_dir)
    if resumable:  # exact resume: the run's own config.yaml already holds the overrides
        return [sys.executable, "-m", "trainer", "fit", "--resume", str(run_dir), "--json",
                "-q"]
    cmd = [sys.executable, "-m", "trainer", "fit", str(sweep.base), "--run-dir",
           str(run_dir), "--json", "-q"]
    for item in trial.overrides:
        cmd += ["--set", item]
    cmd.append("--force")  # what a failed or killed attempt left goes first
    return cmd


def wait_until_free(run_dir, deadline, notify=None, stop=None):
    """Poll the run folder's lock until no process holds it, until ``deadline``
    (time.monotonic()), or until ``stop`` is set; the holder's pid if it still holds it
    then, else None. ``notify(pid)`` is called when the wait begins."""
    run = Run(run_dir)
    holder = run.holder()
    if holder is not None and notify is not None:
        notify(holder)
    while (holder is not None and time.monotonic() < deadline
           and not (stop is not None and stop.is_set())):
        time.sleep(POLL)
        holder = run.holder()
    return holder


class Stop:
    """What stops a sweep: ``set`` (``--fail-fast``: no trial starts any more), or
    ``interrupt`` (Ctrl-C on the sweep: set, and SIGINT passed on to every trial process
    running, which then stops at its next step boundary with a resumable checkpoint).
    The trial processes run in sessions of their own, so a terminal's Ctrl-C reaches
    them through here, once (twice would be a second Ctrl-C: a stop at once)."""

    def __init__(self):
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._procs = set()
        self.interrupted = False

    def set(self):
        self._event.set()

    def is_set(self):
        return self._event.is_set()

    def interrupt(self):
        with self._lock:
            self.interrupted = True
            self._event.set()
            procs = list(self._procs)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)

    def run(self, cmd, env):
        """Run a trial process to its end (a CompletedProcess, its output captured);
        None when the sweep was interrupted before it could start."""
        with self._lock:
            if self.interrupted:
                return None
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=env, start_new_session=True)
            self._procs.add(proc)
        try:
            out, err = proc.communicate()
        finally:
            with self._lock:
                self._procs.discard(proc)
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run_all(calls, workers, stop, where):
    """Each of ``calls`` (no arguments) on ``workers`` threads; their results in order.
    A Ctrl-C meanwhile (KeyboardInterrupt, in this the main thread) interrupts the sweep
    (``stop.interrupt``) and waits for its trials to stop; once all have ended,
    InterruptedRun (exit 130) naming ``where`` (the sweep's folder)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(call) for call in calls]
        while True:
            try:
                if not concurrent.futures.wait(futures, timeout=POLL)[1]:
                    break
            except KeyboardInterrupt:
                stop.interrupt()
    if stop.interrupted:
        raise InterruptedRun(f"interrupted: the sweep's running trials stopped with "
                             f"resumable checkpoints (ledger: {where / 'ledger.csv'}); "
                             f"run the same `trainer sweep` again to continue")
    return [f.result() for f in futures]


def write_trial_file(trial, run_dir):
    """trial.json in the trial's folder: what the ledger needs, whoever ran it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / TRIAL, json.dumps(
        {"trial": trial.id, "index": trial.index, "seed": trial.seed, "point": trial.point,
         "overrides": trial.overrides}, indent=2) + "\n", root=run_dir)


class Ledger:
    """ledger.csv: one row per trial, rebuilt from the trial folders (the truth), so
    shards, workers and other machines sharing the folder all agree."""

    def __init__(self, folder, expected=()):
        self.folder = Path(folder)
        self.expected = list(expected)
        self.errors = {}
        self.in_use = {}  # trial id → why it was not run (run_trial's "in use")
        self.lock = threading.Lock()

    def trials(self):
        found = {}
        for t in self.expected:
            found[t.id] = {"trial": t.id, "index": t.index, "seed": t.seed, "point": t.point}
        if self.folder.exists():
            for f in self.folder.glob(f"*/{TRIAL}"):
                try:
                    data = json.loads(f.read_text())
                except (OSError, ValueError):
                    continue
                found.setdefault(data["trial"], data)
        return sorted(found.values(), key=lambda d: (d["index"], d["seed"]))

    def rows(self):
        rows = []
        for t in self.trials():
            status, metrics = trial_status(self.folder / t["trial"])
            error = self.errors.get(t["trial"], "")
            if t["trial"] in self.errors and status != "completed":
                status = "failed"
            elif t["trial"] in self.in_use and status != "completed":
                status, error = IN_USE_STATUS, self.in_use[t["trial"]]
            rows.append({"trial": t["trial"], "seed": t["seed"], **t["point"],
                         "status": status, **metrics,
                         "run_dir": str(self.folder / t["trial"]), "error": error})
        return rows

    def write(self):
        with self.lock:
            rows = self.rows()
            keys = []
            for r in rows:
                keys += [k for k in r if k not in keys]
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n", restval="")
            w.writeheader()
            w.writerows(rows)
            self.folder.mkdir(parents=True, exist_ok=True)
            write_text(self.folder / "ledger.csv", buf.getvalue(), root=self.folder)
            return rows


def run_trials(sweep, trials, workers=1, fail_fast=False, runs_root="runs", progress=None,
               in_use_timeout=IN_USE_TIMEOUT):
    """Run ``trials`` (those not completed yet) on ``workers`` threads, each trial a
    process; ledger.csv rewritten after each. Returns (ledger rows, results)."""
    folder = sweep_dir(sweep, runs_root)
    ledger = Ledger(folder, trials)
    ledger.write()
    env = thread_env(workers)
    stop = Stop()

    def work(trial):
        if stop.is_set():
            return trial, SKIPPED, {}, ""
        status, metrics = trial_status(folder / trial.id)
        if status == "completed":  # a rerun: nothing to do for this one
            if progress:
                progress(trial, ALREADY_DONE, metrics, "")
            return trial, ALREADY_DONE, metrics, ""

        def waiting(note):
            if progress:
                progress(trial, "waiting", {}, note)

        status, metrics, error = run_trial(sweep, trial, folder / trial.id, env,
                                           in_use_timeout, waiting, stop)
        if status == IN_USE_STATUS:
            ledger.in_use[trial.id] = error
        elif error:
            ledger.errors[trial.id] = error
            if fail_fast:
                stop.set()
        ledger.write()
        if progress:
            progress(trial, status, metrics, error)
        return trial, status, metrics, error

    try:
        results = run_all([functools.partial(work, t) for t in trials], workers, stop,
                          folder)
    finally:
        rows = ledger.write()  # what the trials left, interrupted or not
    return rows, results
