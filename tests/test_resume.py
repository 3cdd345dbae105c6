"""Exact resume: a run stopped anywhere and resumed ends bit for bit where the same
run ends without stopping (weights, optimizer slots, state, history.csv)."""

import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import write_config
from resume_helpers import (QUICK, TINY, StopAt, assert_same_run, config, fit, kernel,
                            resume)
from trainer.app import fit as api
from trainer.store import checkpoint
from trainer.cli import main
from trainer.errors import ConfigError, DataError, InterruptedRun
from trainer.store.runs import Run


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted runs the tests compare against, by extra --set values."""
    base = tmp_path_factory.mktemp("straight")
    done = {}

    def get(*sets):
        if sets not in done:
            done[sets] = base / f"run{len(done)}"
            fit(done[sets], *sets)
        return done[sets]

    return get


def interrupted(run_dir, n, hook="on_batch_end", *sets, at_once=False):
    with pytest.raises(InterruptedRun):
        fit(run_dir, *sets, callbacks=[StopAt(n, hook, at_once)])
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "interrupted"


# 18 steps in all, 6 per epoch: first step, mid-epoch, the last step of an epoch
# (before its validation), mid-epoch again, the very last step.
@pytest.mark.parametrize("k", [1, 4, 6, 11, 18])
def test_interrupt_at_step_k_then_resume_is_bit_identical(tmp_path, straight, k):
    interrupted(tmp_path, k)
    state, _ = checkpoint.read_state(tmp_path / "checkpoints/last.h5")
    # stopped after step k: epoch (k-1)//6 has (k-1)%6 + 1 steps done
    assert (state["loop"]["epoch"], state["loop"]["step"]) == ((k - 1) // 6, (k - 1) % 6 + 1)
    resume(tmp_path)
    assert_same_run(straight(), tmp_path)
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "completed"


@pytest.mark.parametrize("hook,n", [("on_test_begin", 2), ("on_epoch_begin", 3)])
def test_interrupt_in_validation_or_epoch_begin(tmp_path, straight, hook, n):
    interrupted(tmp_path, n, hook, at_once=True)
    resume(tmp_path)
    assert_same_run(straight(), tmp_path)


def test_interrupt_in_epoch_end_keeps_previous_checkpoint(tmp_path, straight):
    # mid on_epoch_end the callbacks disagree on the epoch: nothing is written, the
    # last checkpoint (checkpoint_every: 4 → epoch 1, step 2) stays the resume point
    interrupted(tmp_path, 2, "on_epoch_end", "fit.checkpoint_every=4", at_once=True)
    state, _ = checkpoint.read_state(tmp_path / "checkpoints/last.h5")
    assert (state["loop"]["epoch"], state["loop"]["step"]) == (1, 2)
    resume(tmp_path)
    assert_same_run(straight("fit.checkpoint_every=4"), tmp_path)


def test_several_interruptions_and_decayed_sgd(tmp_path, straight):
    # SGD with momentum and time decay: the lr logged per epoch depends on the step
    sgd = "compile.optimizer={SGD: {lr: 0.05, momentum: 0.9, decay: 0.05}}"
    interrupted(tmp_path, 3, "on_batch_end", sgd)
    for n in (5, 4):
        with pytest.raises(InterruptedRun):
            resume(tmp_path, callbacks=[StopAt(n)])
    resume(tmp_path)
    assert_same_run(straight(sgd), tmp_path)
    resumes = json.loads((tmp_path / "run.json").read_text())["resumes"]
    assert [(r["epoch"], r["step"]) for r in resumes] == [(0, 3), (1, 2), (1, 6)]


def test_mid_epoch_checkpoints_and_longer_resume(tmp_path, straight):
    # checkpoint_every writes last.h5 inside epochs; fit.epochs may grow on resume
    fit(tmp_path, "fit.checkpoint_every=4")
    state, _ = checkpoint.read_state(tmp_path / "checkpoints/last.h5")
    assert (state["loop"]["epoch"], state["loop"]["step"]) == (3, 0)
    prev, _ = checkpoint.read_state(tmp_path / "checkpoints/last.prev.h5")
    assert (prev["loop"]["epoch"], prev["loop"]["step"]) == (2, 4)
    resume(tmp_path, "fit.epochs=4")
    assert_same_run(straight("fit.epochs=4", "fit.checkpoint_every=4"), tmp_path)
    assert len((tmp_path / "history.csv").read_text().splitlines()) == 1 + 4


def test_resume_of_a_finished_run_changes_nothing(tmp_path, straight):
    shutil.copytree(straight(), tmp_path / "r")
    before = kernel(tmp_path / "r")
    _, logs = resume(tmp_path / "r")
    assert np.array_equal(kernel(tmp_path / "r"), before)
    assert logs["val_accuracy"] == pytest.approx(
        json.loads((straight() / "run.json").read_text())["final_metrics"]["val_accuracy"])


# -- damaged checkpoints ------------------------------------------------------------------
def test_truncated_or_corrupt_checkpoint_is_rejected_naming_the_file(tmp_path):
    fit(tmp_path, "fit.epochs=1")
    good = tmp_path / "checkpoints/last.h5"
    data = good.read_bytes()
    bad = tmp_path / "bad.h5"
    rng = np.random.default_rng(1)
    for cut in [0, 1, 100, *rng.integers(0, len(data), 12), len(data) - 1]:
        bad.write_bytes(data[:cut])
        with pytest.raises(DataError, match="bad.h5"):
            checkpoint.verify(bad)
    # one flipped byte inside the weights: still valid HDF5, the checksum says no
    with h5py.File(good, "r") as f:
        offset = f["dense/dense/kernel:0"].id.get_offset()
    flipped = bytearray(data)
    flipped[offset + 10] ^= 0xFF
    bad.write_bytes(bytes(flipped))
    with pytest.raises(DataError, match="bad.h5 is truncated or corrupt: its content does not match"):
        checkpoint.verify(bad)
    with pytest.raises(DataError, match="bad.h5"):  # evaluate and load check it too
        checkpoint.load(bad, api.build(config()))


@pytest.mark.parametrize("seed", [0, 1])
def test_truncated_last_resumes_from_previous(tmp_path, straight, seed, capsys):
    interrupted(tmp_path, 10, "on_batch_end", "fit.checkpoint_every=4")
    last = tmp_path / "checkpoints/last.h5"
    data = last.read_bytes()
    cut = int(np.random.default_rng(seed).integers(0, len(data)))
    last.write_bytes(data[:cut])
    resume(tmp_path)
    assert "last.h5 is truncated or corrupt" in capsys.readouterr().err
    assert (tmp_path / "checkpoints/last.corrupt.h5").exists()
    assert_same_run(straight("fit.checkpoint_every=4"), tmp_path)


def test_no_valid_checkpoint_is_a_data_error(tmp_path):
    interrupted(tmp_path, 2)
    for name in ("last.h5", "last.prev.h5"):
        path = tmp_path / "checkpoints" / name
        if path.exists():
            path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="no checkpoint to resume from"):
        resume(tmp_path)


# -- config changes -----------------------------------------------------------------------
def test_unsafe_config_change_is_refused_listing_keys(tmp_path, straight):
    interrupted(tmp_path, 4)
    r = CliRunner().invoke(main, ["fit", "--resume", str(tmp_path), "--set",
                                  "fit.batch_size=8", "--set", "compile.optimizer.Adam.lr=0.1"])
    assert r.exit_code == 2, r.output
    assert "fit.batch_size" in r.output and "compile.optimizer.Adam.learning_rate" in r.output
    # a CONFIG given with --resume is compared the same way
    text = QUICK.read_text().replace("units: 128", "units: 64")
    r = CliRunner().invoke(main, ["fit", str(write_config(tmp_path.parent, text, "other.yaml")),
                                  "--resume", str(tmp_path), *sum((["--set", s] for s in TINY),
                                                                  [])])
    assert r.exit_code == 2 and "model.layers[1].Dense.units" in r.output
    # safe changes pass and are recorded
    r = CliRunner().invoke(main, ["fit", "--resume", str(tmp_path), "--set", "fit.epochs=4",
                                  "--set", "expect.val_accuracy='>= 0.1'", "--set",
                                  "fit.verbose=2"])
    assert r.exit_code == 0, r.output
    change = json.loads((tmp_path / "run.json").read_text())["resumes"][-1]
    assert change["forced"] is False and "fit.epochs" in change["changed"]


def test_force_resumes_with_other_config(tmp_path):
    interrupted(tmp_path, 4)
    with pytest.raises(ConfigError, match="fit.shuffle"):
        resume(tmp_path, "fit.shuffle=false")
    resume(tmp_path, "fit.shuffle=false", force=True)
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["status"] == "completed" and meta["resumes"][-1]["forced"] is True
    assert (tmp_path / "config.yaml").read_text().count("shuffle: false") == 1


def test_cli_resume_usage_errors(tmp_path):
    for args in (["fit"], ["fit", str(QUICK), "--force"], ["fit", "--resume", str(tmp_path)],
                 ["fit", "--resume", str(tmp_path), "--run-dir", str(tmp_path)]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2, (args, r.output)
        assert "Traceback" not in r.output


# -- the run folder lock ------------------------------------------------------------------
def test_second_fit_on_a_locked_run_folder_is_refused(tmp_path):
    interrupted(tmp_path, 2)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with Run(tmp_path).lock():
        for args in (["fit", "--resume", str(tmp_path)],
                     ["fit", str(QUICK), "--run-dir", str(tmp_path), "--force"]):
            r = CliRunner().invoke(main, args)
            assert r.exit_code == 2, r.output
            assert "in use by another trainer process" in r.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # --force removed nothing
    # released: a resume now works
    assert CliRunner().invoke(main, ["fit", "--resume", str(tmp_path)]).exit_code == 0


def test_lock_held_by_a_real_process_and_freed_by_its_death(tmp_path):
    code = ("import sys, time; from trainer.store.runs import Run\n"
            "with Run(sys.argv[1]).lock():\n    print('locked', flush=True); time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=f"pid {p.pid}"):
            with Run(tmp_path).lock():
                pass
    finally:
        p.kill()
        p.wait()
    with Run(tmp_path).lock():  # a killed holder leaves nothing stuck
        pass


def test_which_config_changes_a_resume_accepts():
    from trainer.training.resume import config_hash, unsafe_differences

    base = {"name": "a", "fit": {"epochs": 3, "batch_size": 16, "verbose": 0},
            "expect": {}, "callbacks": [{"EarlyStopping": {"patience": 2}}],
            "model": {"layers": [{"Dense": {"units": 4}}]}}
    safe = json.loads(json.dumps(base))
    safe["fit"].update(epochs=9, verbose=2, checkpoint_every=5)
    safe.update(name="b", expect={"val_loss": "<= 1"})
    safe["callbacks"] = ["ProgbarLogger", *safe["callbacks"], {"CSVLogger": {"f": "x.csv"}}]
    assert unsafe_differences(base, safe) == []
    assert config_hash(base) == config_hash(safe)
    unsafe = json.loads(json.dumps(safe))
    unsafe["callbacks"][1]["EarlyStopping"]["patience"] = 3
    unsafe["model"]["layers"].append("Flatten")
    unsafe["fit"]["batch_size"] = 8
    assert unsafe_differences(base, unsafe) == [
        "fit.batch_size", "callbacks[0].EarlyStopping.patience", "model.layers"]
    assert config_hash(base) != config_hash(unsafe)


def test_resume_finds_data_relative_to_the_original_config(tmp_path, monkeypatch):
    # the run folder's config.yaml keeps `path: digits.npz`; a resume from another
    # folder still reads it next to the config the run was started from
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(QUICK.parent.parent / "trainer/datasets/files/digits.npz", folder)
    text = QUICK.read_text().replace("{dataset: digits, subset: train}",
                                     "{path: digits.npz, x: x, y: y}")
    cfg_path = write_config(folder, text)
    run_dir = tmp_path / "run"
    r = CliRunner().invoke(main, ["fit", str(cfg_path), "--run-dir", str(run_dir),
                                  *sum((["--set", s] for s in [*TINY, "fit.epochs=1"]), [])])
    assert r.exit_code == 0, r.output
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["fit", "--resume", "run", "--set", "fit.epochs=2"])
    assert r.exit_code == 0, r.output
    assert len((run_dir / "history.csv").read_text().splitlines()) == 3


def test_lock_file_is_removed_when_the_run_ends(tmp_path):
    """Users asked what `.lock` is: it goes when the run ends (a finished fit, a failed
    one, a resumed one), and a lock taken after that works as before."""
    r = CliRunner().invoke(main, ["fit", str(QUICK), "--run-dir", str(tmp_path / "run"),
                                  "--set", "fit.epochs=1", "-q"])
    assert r.exit_code in (0, 4), r.output
    assert (tmp_path / "run" / "checkpoints" / "last.h5").exists()
    assert not (tmp_path / "run" / ".lock").exists()
    with Run(tmp_path / "run").lock():
        assert (tmp_path / "run" / ".lock").read_text().strip() == str(os.getpid())
        with pytest.raises(ConfigError, match="in use by another trainer process"):
            with Run(tmp_path / "run").lock():
                pass
    assert not (tmp_path / "run" / ".lock").exists()


def test_a_lock_on_a_file_its_holder_removed_is_not_a_lock(tmp_path, monkeypatch):
    """The holder removes `.lock` as it ends: a process that opened the old file just
    before must not believe it holds the lock on the removed file."""
    import fcntl

    run = Run(tmp_path)
    real_flock = fcntl.flock
    calls = []

    def flock_after_holder_ended(fd, op):
        if not calls:  # between our open and our flock, the holder ends and removes it
            (tmp_path / ".lock").unlink()
        calls.append(fd)
        return real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock_after_holder_ended)
    with run.lock():
        held = os.stat(tmp_path / ".lock").st_ino
        assert len(calls) == 2  # the first lock was on the removed file: taken again
    assert held
