"""Faults around the run folder: a full disk while a checkpoint is written, a
read-only run folder, a run folder deleted mid-run. Each ends with exit code 6, one
message naming the file or folder, no traceback, and the last checkpoint written
before intact and resumable.

(kill -9, SIGTERM and SIGINT: tests/stress/test_kill_resume.py; NaN mid-training:
tests/test_callbacks_nan.py; two fits on one folder: tests/test_resume.py.)"""

import errno
import json
import os
import shutil
import tempfile

import pytest
from click.testing import CliRunner

from resume_helpers import QUICK, TINY, assert_same_run, fit, resume
from trainer.store import checkpoint
from trainer import fileio
from trainer.callbacks.base import Callback
from trainer.cli import main
from trainer.fileio import WriteError


def cli_fit(run_dir, *sets):
    args = ["fit", str(QUICK), "--run-dir", str(run_dir), "-q"]
    for s in [*TINY, *sets]:
        args += ["--set", s]
    return CliRunner().invoke(main, args)


def epoch_of(path):
    return checkpoint.read_state(path)[0]["loop"]["epoch"]


def assert_clean_failure(r, *words):
    assert r.exit_code == 6, r.output
    assert r.output.startswith("error: ") and r.output.count("error:") == 1, r.output
    assert "Traceback" not in r.output and "internal error" not in r.output, r.output
    for w in words:
        assert w in r.output, r.output


def failing_after(real, n, errnum, match):
    """``real`` (a function whose first argument is a file descriptor or a path) that
    raises OSError(errnum) from its n-th call on a file whose name contains ``match``."""
    calls = {"n": 0}

    def fake(target, *args, **kwargs):
        name = os.readlink(f"/proc/self/fd/{target}") if isinstance(target, int) else str(target)
        if match in name:
            calls["n"] += 1
            if calls["n"] >= n:
                raise OSError(errnum, os.strerror(errnum), name)
        return real(target, *args, **kwargs)

    return fake


def test_full_disk_while_writing_a_checkpoint(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    # the second last.h5 write (end of epoch 2) hits a full disk
    monkeypatch.setattr(os, "fsync", failing_after(os.fsync, 2, errno.ENOSPC, ".last.h5."))
    r = cli_fit(run_dir)
    monkeypatch.undo()
    assert_clean_failure(r, "last.h5", "No space left on device", "previous version")
    last = run_dir / "checkpoints/last.h5"
    checkpoint.verify(last)
    assert epoch_of(last) == 1  # the epoch-1 checkpoint, intact
    assert not list(run_dir.rglob(".*.tmp"))  # no half-written temporary left
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "failed" and "No space left" in meta["error"]
    # space is back: the run resumes and ends exactly as an uninterrupted one
    resume(run_dir)
    fit(tmp_path / "straight")
    assert_same_run(tmp_path / "straight", run_dir)


def test_full_disk_in_a_callback_file(tmp_path, monkeypatch):
    """A CSVLogger appending its row on a full disk: the same clean exit 6."""
    real_open = open

    def full_open(file, mode="r", *args, **kwargs):
        if "epochs.csv" in str(file) and "a" in mode:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_open)
    r = cli_fit(tmp_path / "run", "callbacks=[{CSVLogger: {filename: epochs.csv}}]")
    monkeypatch.undo()
    assert_clean_failure(r, "epochs.csv", "No space left on device")


def test_read_only_run_folder_simulated(tmp_path, monkeypatch):
    """The file system turns read-only mid-run (EROFS; also what chmod gives a
    non-root user): the run stops at the next write with exit 6."""
    run_dir = tmp_path / "run"
    real = tempfile.mkstemp
    calls = {"n": 0}

    def read_only(*args, **kwargs):
        if ".last.h5." in kwargs.get("prefix", ""):
            calls["n"] += 1
            if calls["n"] >= 2:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), kwargs.get("dir"))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    r = cli_fit(run_dir)
    monkeypatch.undo()
    assert_clean_failure(r, "last.h5", "Read-only file system")
    checkpoint.verify(run_dir / "checkpoints/last.h5")
    assert epoch_of(run_dir / "checkpoints/last.h5") == 1


def test_read_only_run_folder_on_resume(tmp_path, monkeypatch):
    """Resuming a run whose folder cannot be written: exit 6 before any training."""
    fit(tmp_path / "run", "fit.epochs=1")
    real = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).endswith(".lock") and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    r = CliRunner().invoke(main, ["fit", "--resume", str(tmp_path / "run"), "-q",
                                  "--set", "fit.epochs=2"])
    monkeypatch.undo()
    assert_clean_failure(r, "cannot write the run folder", "Read-only file system")
    assert epoch_of(tmp_path / "run/checkpoints/last.h5") == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod")
def test_read_only_run_folder_chmod(tmp_path):
    run_dir = tmp_path / "run"
    fit(run_dir, "fit.epochs=1")
    os.chmod(run_dir / "checkpoints", 0o555)
    os.chmod(run_dir, 0o555)
    try:
        r = CliRunner().invoke(main, ["fit", "--resume", str(run_dir), "-q",
                                      "--set", "fit.epochs=2"])
    finally:
        os.chmod(run_dir, 0o755)
        os.chmod(run_dir / "checkpoints", 0o755)
    assert r.exit_code == 6 and "Traceback" not in r.output, r.output
    checkpoint.verify(run_dir / "checkpoints/last.h5")


class DeleteRunFolder(Callback):
    """Deletes the run folder at the end of the n-th epoch (before its checkpoint)."""

    def __init__(self, run_dir, epoch):
        super().__init__()
        self.run_dir, self.epoch = run_dir, epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            shutil.rmtree(self.run_dir)


def test_run_folder_deleted_mid_run(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(WriteError, match="was deleted or moved while the run was training") \
            as info:
        fit(run_dir, callbacks=[DeleteRunFolder(run_dir, 1)])
    assert info.value.exit_code == 6
    assert not run_dir.exists()  # not silently recreated by the next write


def test_write_error_is_exit_6_and_documented():
    from conftest import ROOT

    assert fileio.WriteError.exit_code == 6
    assert "| 6 |" in (ROOT / "README.md").read_text()


def test_out_of_memory_mid_run_is_a_config_error_keeping_the_checkpoint(tmp_path, monkeypatch):
    """A batch or layer too big for memory raised MemoryError in the middle of training
    and ended as 'internal error' (exit 1). It is the config's sizes: exit 2 with the
    fix, recorded in run.json, and the last checkpoint (epoch 1) stays resumable; the
    other commands say the same."""
    from trainer.layers.core import Dense

    real = Dense.forward
    calls = {"n": 0}

    def forward(self, x, training):
        calls["n"] += training
        if calls["n"] > 14:  # 2 Dense layers x 6 steps per epoch: inside epoch 2
            raise MemoryError("Unable to allocate 12.0 GiB for an array with shape "
                              "(100000, 32768) and data type float32")
        return real(self, x, training)

    monkeypatch.setattr(Dense, "forward", forward)
    r = cli_fit(tmp_path / "r")
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: out of memory (") and r.output.count("error:") == 1
    assert "Unable to allocate 12.0 GiB" in r.output and "fit.batch_size" in r.output
    assert "Traceback" not in r.output and "internal error" not in r.output
    meta = json.loads((tmp_path / "r" / "run.json").read_text())
    assert meta["status"] == "failed" and meta["error"].startswith("out of memory")
    assert epoch_of(tmp_path / "r" / "checkpoints" / "last.h5") == 1
    r = CliRunner().invoke(main, ["evaluate", str(tmp_path / "r")])
    assert r.exit_code == 2 and r.output.startswith("error: out of memory"), r.output


def test_a_run_file_deleted_under_a_running_fit_is_a_write_error(tmp_path):
    """rm -rf of a running run folder removes its files before the folder: a callback
    that then finds its CSV gone is exit 6 like the deleted folder, not exit 1 (seen
    once in tests/stress/test_concurrency.py under load)."""
    import errno

    from trainer.app.fit import _write_error
    from trainer.fileio import WriteError
    from trainer.store.runs import Run

    run = Run(tmp_path / "run")
    run.checkpoints.mkdir(parents=True)
    (run.path / ".lock").touch()  # still present: its files go first under rm -rf
    gone = FileNotFoundError(errno.ENOENT, "No such file or directory",
                             str(run.path / "epochs.csv"))
    error = _write_error(run, gone)
    assert isinstance(error, WriteError) and "epochs.csv was deleted" in str(error)
    elsewhere = FileNotFoundError(errno.ENOENT, "No such file or directory",
                                  str(tmp_path / "data.csv"))
    assert _write_error(run, elsewhere) is None  # a missing input is not the run's
