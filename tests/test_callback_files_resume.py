"""Files callbacks write (CSVLogger, TensorBoard, ModelCheckpoint) continue exactly on
`fit --resume`: a finished run resumed with more epochs, a run stopped by Ctrl-C, one
killed after a callback wrote an epoch's row but before the checkpoint of that epoch."""

import shutil

import pytest

from resume_helpers import (FILE_CALLBACKS, StopAt, assert_same_callback_files,
                            assert_same_run, fit, resume)
from trainer.errors import InterruptedRun

pytest.importorskip("tensorboardX")


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    base = tmp_path_factory.mktemp("straight")
    done = {}

    def get(epochs=3):
        if epochs not in done:
            done[epochs] = base / f"run{epochs}"
            fit(done[epochs], FILE_CALLBACKS, f"fit.epochs={epochs}")
        return done[epochs]

    return get


def test_resuming_a_finished_run_keeps_its_files(tmp_path, straight):
    shutil.copytree(straight(), tmp_path / "r")
    before = (tmp_path / "r/logs/train.csv").read_bytes()
    resume(tmp_path / "r")
    assert (tmp_path / "r/logs/train.csv").read_bytes() == before  # not emptied
    assert_same_callback_files(straight(), tmp_path / "r")


def test_a_finished_run_resumed_with_more_epochs(tmp_path, straight):
    shutil.copytree(straight(), tmp_path / "r")
    resume(tmp_path / "r", "fit.epochs=5")
    assert_same_run(straight(5), tmp_path / "r")
    assert_same_callback_files(straight(5), tmp_path / "r")


@pytest.mark.parametrize("k", [3, 6, 13])
def test_interrupted_then_resumed(tmp_path, straight, k):
    with pytest.raises(InterruptedRun):
        fit(tmp_path, FILE_CALLBACKS, callbacks=[StopAt(k)])
    resume(tmp_path)
    assert_same_run(straight(), tmp_path)
    assert_same_callback_files(straight(), tmp_path)


def test_rows_written_after_the_checkpoint_are_not_duplicated(tmp_path, straight):
    # stopped inside epoch 2's on_epoch_end, after the CSVLogger wrote its row and
    # TensorBoard its scalars (they come first), before the checkpoint of that epoch
    with pytest.raises(InterruptedRun):
        fit(tmp_path, FILE_CALLBACKS, callbacks=[StopAt(2, "on_epoch_end", at_once=True)])
    assert (tmp_path / "logs/train.csv").read_text().count("\n") == 3  # header + 2 rows
    resume(tmp_path)
    assert_same_run(straight(), tmp_path)
    assert_same_callback_files(straight(), tmp_path)
