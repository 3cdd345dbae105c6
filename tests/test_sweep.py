"""Sweeps: grid × seeds with workers, rerun skips finished trials, shards, Optuna storage."""

import csv
import json
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from conftest import SWEEP_BASE, write_config
from trainer.cli import main

BASE = SWEEP_BASE

GRID = """\
name: grid
base: base.yaml
search:
  grid:
    compile.optimizer.Adam.lr: [0.01, 0.03]
    model.layers.0.Dense.units: [4, 8]
seeds: [0, 1]
metric: val_accuracy
mode: max
"""


def sweep(*args):
    return CliRunner().invoke(main, ["sweep", *map(str, args)])


def ledger(root, name="grid"):
    with open(root / name / "ledger.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def files(workdir):
    write_config(workdir, BASE, "base.yaml")
    return write_config(workdir, GRID, "sweep.yaml")


def test_grid_workers_kill_resume_rerun(files, workdir):
    """4 points x 2 seeds with 2 workers; a sweep killed mid-way and rerun gives the
    same ledger as one never killed; a rerun of a finished sweep runs nothing."""
    r = sweep(files, "--workers", "2", "--runs-root", workdir / "clean")
    assert r.exit_code == 0, r.output
    rows = ledger(workdir / "clean")
    assert len(rows) == 8 and {r["status"] for r in rows} == {"completed"}
    assert len({r["trial"] for r in rows}) == 8
    summary = list(csv.DictReader(open(workdir / "clean/grid/summary.csv")))
    assert len(summary) == 4 and all(s["seeds_done"] == "2" for s in summary)
    means = [float(s["val_accuracy_mean"]) for s in summary]
    assert means == sorted(means, reverse=True)

    proc = subprocess.Popen([sys.executable, "-m", "trainer", "sweep", str(files), "--workers",
                             "2", "--runs-root", str(workdir / "killed")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        done = list((workdir / "killed" / "grid").glob("*/run.json"))
        if any('"completed"' in p.read_text() for p in done):
            break
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    r = sweep(files, "--runs-root", workdir / "killed")
    assert r.exit_code == 0, r.output
    key = lambda rows: sorted((r["trial"], r["val_accuracy"], r["loss"]) for r in rows)  # noqa
    assert key(ledger(workdir / "killed")) == key(rows)

    started = {r["trial"]: json.loads(open(f"{r['run_dir']}/run.json").read())["started"]
               for r in rows}
    r = sweep(files, "--runs-root", workdir / "clean")
    assert r.exit_code == 0
    for row in ledger(workdir / "clean"):  # nothing was run twice
        assert json.loads(open(f"{row['run_dir']}/run.json").read())["started"] == \
            started[row["trial"]]


def test_shards_cover_the_grid_once(workdir):
    write_config(workdir, BASE, "base.yaml")
    files = write_config(workdir, GRID.replace("seeds: [0, 1]", "seeds: [0]"), "sweep.yaml")
    for i in (1, 2):
        r = sweep(files, "--shard", f"{i}/2", "--runs-root", workdir / "runs")
        assert r.exit_code == 0, r.output
        assert r.output.count("completed val_accuracy") == 2  # its half, nothing more
    r = sweep(files, "--status", "--json", "--runs-root", workdir / "runs")
    report = json.loads(r.stdout)
    assert report["counts"] == {"completed": 4}
    assert len({t["trial"] for t in report["trials"]}) == 4


def test_sweep_gate_and_bad_file(files, workdir):
    text = GRID + "expect: {val_accuracy: '>= 1.5'}\n"
    path = write_config(workdir, text.replace("[0, 1]", "[0]").replace(
        "[0.01, 0.03]", "[0.01]").replace("[4, 8]", "[4]"), "gate.yaml")
    r = sweep(path, "--runs-root", workdir / "runs")
    assert r.exit_code == 4 and "val_accuracy >= 1.5" in r.output
    bad = write_config(workdir, GRID.replace("grid:", "gird:"), "bad.yaml")
    r = sweep(bad, "--runs-root", workdir / "runs")
    assert r.exit_code == 2 and "gird" in r.output and "bad.yaml:4" in r.output


def test_optuna_study_shared_by_two_processes(workdir):
    pytest.importorskip("optuna")
    write_config(workdir, BASE, "base.yaml")
    path = write_config(workdir, """\
name: study
base: base.yaml
search:
  tpe: {compile.optimizer.Adam.lr: {loguniform: [0.001, 0.1]}}
  trials: 4
metric: val_accuracy
mode: max
storage: journal.log
""", "study.yaml")
    cmd = [sys.executable, "-m", "trainer", "sweep", str(path), "--runs-root",
           str(workdir / "runs")]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=240) in (0, 4), p.stderr.read()
    runs = list((workdir / "runs" / "study").glob("*/run.json"))
    assert len(runs) == 4  # every trial ran exactly once, across both processes
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    study = optuna.load_study(study_name="study", storage=JournalStorage(
        JournalFileBackend(str(workdir / "journal.log"))))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4


def test_sweep_schema_file_matches():
    from conftest import ROOT
    from trainer.sweeps.spec import sweep_schema
    on_disk = json.loads((ROOT / "schemas" / "sweep.schema.json").read_text())
    assert on_disk == sweep_schema(), "run `trainer schema --sweep > schemas/sweep.schema.json`"


def test_example_sweep_runs_one_shard(workdir):
    """configs/sweeps/ examples run too (one trial of eight, so the test stays short)."""
    from conftest import ROOT
    path = ROOT / "configs" / "sweeps" / "quickstart_lr.yaml"
    r = sweep(path, "--shard", "1/8", "--runs-root", workdir / "runs")
    assert r.exit_code in (0, 4), r.output
    rows = ledger(workdir / "runs", "quickstart-lr")
    assert [r["status"] for r in rows].count("completed") == 1 and len(rows) == 1
