"""Run trials as `trainer fit` subprocesses, keep the ledger, summarise."""

import concurrent.futures
import csv
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from trainer.fileio import write_text
from trainer.runfiles import TRIAL


#: what a rerun reports for a trial it found finished (the ledger keeps "completed")
ALREADY_DONE = "skipped (already done)"


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


def run_trial(sweep, trial, run_dir, env):
    """One trial in its own process. Returns (status, metrics, error text)."""
    status, metrics = trial_status(run_dir)
    if status == "completed":
        return status, metrics, ""
    resumable = status in ("interrupted", "running", "failed") and (
        run_dir / "checkpoints" / "last.h5").exists()
    write_trial_file(trial, run_dir)
    if resumable:  # exact resume: the run's own config.yaml already holds the overrides
        cmd = [sys.executable, "-m", "trainer", "fit", "--resume", str(run_dir), "--json", "-q"]
    else:
        cmd = [sys.executable, "-m", "trainer", "fit", str(sweep.base), "--run-dir",
               str(run_dir), "--json", "-q"]
        for item in trial.overrides:
            cmd += ["--set", item]
        cmd.append("--force")  # what a failed or killed attempt left goes first
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    status, metrics = trial_status(run_dir)
    error = ""
    if proc.returncode not in (0, 4):  # 4: the base config's own gate; metrics are valid
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        error = lines[-1] if lines else f"exit code {proc.returncode}"
        status = "failed"
    return status, metrics, error


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
            if t["trial"] in self.errors and status != "completed":
                status = "failed"
            rows.append({"trial": t["trial"], "seed": t["seed"], **t["point"],
                         "status": status, **metrics,
                         "run_dir": str(self.folder / t["trial"]),
                         "error": self.errors.get(t["trial"], "")})
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


def run_trials(sweep, trials, workers=1, fail_fast=False, runs_root="runs", progress=None):
    folder = sweep_dir(sweep, runs_root)
    ledger = Ledger(folder, trials)
    ledger.write()
    env = thread_env(workers)
    stop = threading.Event()

    def work(trial):
        if stop.is_set():
            return trial, "skipped", {}, ""
        status, metrics = trial_status(folder / trial.id)
        if status == "completed":  # a rerun: nothing to do for this one
            if progress:
                progress(trial, ALREADY_DONE, metrics, "")
            return trial, ALREADY_DONE, metrics, ""
        status, metrics, error = run_trial(sweep, trial, folder / trial.id, env)
        if error:
            ledger.errors[trial.id] = error
            if fail_fast:
                stop.set()
        ledger.write()
        if progress:
            progress(trial, status, metrics, error)
        return trial, status, metrics, error

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(work, trials))
    return ledger.write(), results
