"""A sweep with more workers than cores: it finishes, each trial process gets its
share of the BLAS/Numba threads (at least one), and the results are those of a
sweep run with one worker.

(Two fits on one run folder: tests/test_resume.py::
test_second_fit_on_a_locked_run_folder_is_refused and
::test_lock_held_by_a_real_process_and_freed_by_its_death; a run folder deleted mid-run:
tests/test_faults.py::test_run_folder_deleted_mid_run.)"""

import csv
import json

import numpy as np
from click.testing import CliRunner

from conftest import SWEEP_BASE, write_config
from trainer.cli import main
from trainer.sweeps import runner

BASE = SWEEP_BASE + """\
callbacks:
  - {callback: "threads_seen:Record"}
"""

RECORD = '''
import json
import os

from trainer.callbacks.base import Callback


class Record(Callback):
    """Writes the thread settings its process was started with into the run folder."""

    def on_train_begin(self, logs=None):
        names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "NUMBA_NUM_THREADS")
        (self.run.path / "threads.json").write_text(
            json.dumps({n: os.environ.get(n) for n in names}))
'''

GRID = """\
name: grid
base: base.yaml
search:
  grid:
    compile.optimizer.Adam.lr: [0.01, 0.03]
seeds: [0, 1]
metric: val_accuracy
mode: max
"""


def ledger(root):
    with open(root / "grid" / "ledger.csv") as f:
        return sorted(csv.DictReader(f), key=lambda r: r["trial"])


def test_threads_are_divided_among_workers(monkeypatch):
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 2)
    assert runner.thread_env(1)["NUMBA_NUM_THREADS"] == "2"
    assert runner.thread_env(2)["OPENBLAS_NUM_THREADS"] == "1"
    assert runner.thread_env(4)["OMP_NUM_THREADS"] == "1"  # never 0


def test_more_workers_than_cores_finishes_with_the_same_results(workdir, monkeypatch):
    write_config(workdir, BASE, "base.yaml")
    (workdir / "threads_seen.py").write_text(RECORD)
    sweep_file = write_config(workdir, GRID, "sweep.yaml")
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 2)  # as on the 2-core CI
    results = {}
    for workers in (4, 1):
        root = workdir / f"w{workers}"
        r = CliRunner().invoke(main, ["sweep", str(sweep_file), "--workers", str(workers),
                                      "--runs-root", str(root)])
        assert r.exit_code == 0, r.output
        rows = ledger(root)
        assert len(rows) == 4 and {row["status"] for row in rows} == {"completed"}
        for row in rows:
            seen = json.loads((root / "grid" / row["trial"] / "threads.json").read_text())
            assert set(seen.values()) == {"2" if workers == 1 else "1"}, seen
        results[workers] = rows
    # the same trials with the same metrics (thread counts may change float sums in
    # the last bits, see "Exact resume" in the README)
    assert [r["trial"] for r in results[4]] == [r["trial"] for r in results[1]]
    for a, b in zip(results[4], results[1]):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert np.isclose(float(a[key]), float(b[key]), rtol=1e-5, atol=1e-7), (key, a, b)


def test_run_folder_deleted_under_a_running_fit(tmp_path):
    """rm -rf of the run folder while a real `trainer fit` writes a checkpoint every
    step: whatever write the deletion hits, exit 6 saying the folder is gone. (Files
    being written at that instant may reappear; the in-process, deterministic version
    that checks nothing is recreated: tests/test_faults.py::test_run_folder_deleted_mid_run.)"""
    import shutil
    import subprocess
    import sys
    import time

    from resume_helpers import QUICK, TINY

    for i, delay in enumerate((0.0, 0.15, 0.3)):
        run = tmp_path / f"run{i}"
        sets = [*TINY, "fit.epochs=1000", "fit.checkpoint_every=1",
                "callbacks=[{CSVLogger: {filename: epochs.csv}}]"]
        p = subprocess.Popen([sys.executable, "-m", "trainer", "fit", str(QUICK), "--run-dir",
                              str(run), *sum((["--set", s] for s in sets), [])],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + 60
        while not (run / "checkpoints/last.h5").exists():
            assert p.poll() is None and time.monotonic() < end, p.communicate()
            time.sleep(0.02)
        time.sleep(delay)
        shutil.rmtree(run, ignore_errors=True)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 6, err
        assert "deleted or moved" in err and "Traceback" not in err, err
