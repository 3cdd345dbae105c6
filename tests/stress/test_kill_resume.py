"""Real `trainer fit` processes stopped by signals — kill -9 at random moments,
SIGTERM, SIGINT, floods of both — then resumed: the run ends bit for bit where an
uninterrupted one does, and so does every file its callbacks wrote (CSVLogger,
TensorBoard, ModelCheckpoint). Runs in the default `pytest` (well under a minute)."""

import contextlib
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from resume_helpers import (FILE_CALLBACKS, QUICK, TINY, assert_same_callback_files,
                            assert_same_run, fit, resume)
from trainer.store import checkpoint
from trainer.cli import main

# long enough never to finish on its own; the final resume cuts fit.epochs down
SETS = [*TINY, FILE_CALLBACKS, "fit.epochs=1000"]


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "trainer", "fit", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def start_fit(run_dir, *sets):
    return start(QUICK, "--run-dir", run_dir, *sum((["--set", s] for s in [*SETS, *sets]), []))


def wait_for(path, proc, timeout=60):
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.02)


def wait_for_progress(run_dir, before, proc, timeout=60):
    end = time.monotonic() + timeout
    while position(run_dir) == before:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "the resumed run made no progress"
        time.sleep(0.02)


def position(run_dir):
    path, _ = checkpoint.newest_valid([run_dir / "checkpoints/last.h5",
                                       run_dir / "checkpoints/last.prev.h5"])
    loop = checkpoint.read_state(path)[0]["loop"]
    return loop["epoch"], loop["step"]


def finish_and_compare(run_dir, tmp_path):
    """Resume to the end of the epoch the run was in, and compare with a run that
    went there without stopping (and without mid-epoch checkpoints, which change
    nothing but where a resume may start): the checkpoint and history, and every file
    the callbacks wrote."""
    epoch, _ = position(run_dir)
    epochs = f"fit.epochs={epoch + 1}"
    resume(run_dir, epochs)
    fit(tmp_path / "straight", FILE_CALLBACKS, epochs)
    assert_same_run(tmp_path / "straight", run_dir)
    assert_same_callback_files(tmp_path / "straight", run_dir)


#: enough kills to land in start-up, resume, steps and checkpoint writes (each costs a
#: process start, ~1-4 s; the CI budget is 15 minutes for the whole suite)
KILLS = 12


def test_kill_9_at_random_moments_then_resume(tmp_path):
    """One run killed with SIGKILL KILLS times at seeded random moments, resumed after
    each: during start-up and resume (reading the checkpoint, rewriting run.json and
    history.csv), inside optimizer steps and inside checkpoint writes. Every time a
    valid checkpoint is left, and the end is bit for bit the uninterrupted run's —
    the CSVLogger file byte for byte (rows written after the last checkpoint are not
    repeated), the TensorBoard scalars, each ModelCheckpoint file."""
    rng = np.random.default_rng(2026)
    run_dir = tmp_path / "run"
    # a checkpoint every step: most of the time goes to writing last.h5, so the
    # kills land inside checkpoint writes as well as inside steps
    p = start_fit(run_dir, "fit.checkpoint_every=1")
    wait_for(run_dir / "checkpoints/last.h5", p)
    # while it runs, the run folder is locked
    r = CliRunner().invoke(main, ["fit", "--resume", str(run_dir)])
    assert r.exit_code == 2 and "in use by another trainer process" in r.output
    kills, early = [position(run_dir)], 0
    for attempt in range(KILLS):
        if attempt and rng.random() < 0.25:  # while it starts up and resumes
            early += 1
            time.sleep(rng.uniform(0.0, 1.5))
        else:
            wait_for_progress(run_dir, kills[-1], p)
            time.sleep(rng.uniform(0.0, 0.4))
        p.kill()
        p.wait()
        assert not (run_dir / "checkpoints/last.corrupt.h5").exists()
        kills.append(position(run_dir))  # a valid checkpoint is always there
        if attempt < KILLS - 1:
            p = start("--resume", run_dir)
    assert kills == sorted(kills) and kills[-1] > kills[0]  # the run went forward
    assert len(set(kills)) > KILLS // 2
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    # each resume that trained recorded itself (one killed early may not have)
    resumes = json.loads((run_dir / "run.json").read_text())["resumes"]
    assert KILLS - 1 - early <= len(resumes) <= KILLS - 1
    finish_and_compare(run_dir, tmp_path)


@pytest.mark.parametrize("sig,code,word", [(signal.SIGTERM, 143, "terminated"),
                                           (signal.SIGINT, 130, "interrupted")])
def test_signal_writes_checkpoint_and_exits(tmp_path, sig, code, word):
    run_dir = tmp_path / "run"
    p = start_fit(run_dir, "fit.checkpoint_every=5")
    wait_for(run_dir / "checkpoints/last.h5", p)
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert p.returncode == code, err
    assert word in err and f"--resume {run_dir}" in err and "Traceback" not in err
    checkpoint.verify(run_dir / "checkpoints/last.h5")
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "interrupted"
    finish_and_compare(run_dir, tmp_path)


@pytest.mark.parametrize("signals", [[signal.SIGTERM], [signal.SIGTERM, signal.SIGINT]])
def test_a_flood_of_signals_ends_the_run_interrupted(tmp_path, signals):
    """SIGTERM (and SIGINT) every few milliseconds until the process ends: run.json
    says `interrupted`, no traceback or "Exception ignored" on stderr, and the run
    resumes to the uninterrupted end."""
    run_dir = tmp_path / "run"
    p = start_fit(run_dir, "fit.checkpoint_every=5")
    wait_for(run_dir / "checkpoints/last.h5", p)
    n = 0
    while p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signals[n % len(signals)])
        n += 1
        time.sleep(0.003)
    out, err = p.communicate(timeout=120)
    assert n > 1
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    assert p.returncode in (130, 143, -signal.SIGTERM), (p.returncode, err)
    finish_and_compare(run_dir, tmp_path)
