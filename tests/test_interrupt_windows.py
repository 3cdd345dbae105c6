"""A stop that comes while callbacks are in the middle of a step's hooks — inside a
ModelCheckpoint file write, between TensorBoard's scalars and ModelCheckpoint's turn,
inside the checkpoint of the training state itself — never leaves a checkpoint that
disagrees with the files the callbacks wrote: the resumed run ends bit for bit where an
uninterrupted one does, and so does every file its callbacks wrote.

Each case raises KeyboardInterrupt at one precise point, as a second Ctrl-C (or a
flood of SIGTERM/SIGINT, tests/stress/test_kill_resume.py) does wherever it lands."""

import pytest

from resume_helpers import FILE_CALLBACKS, assert_same_callback_files, assert_same_run, \
    fit, resume
from trainer.build.model import Model
from trainer.callbacks.event_file import EventFile
from trainer.callbacks.model_checkpoint import ModelCheckpoint
from trainer.callbacks.tensorboard import TensorBoard
from trainer.errors import InterruptedRun
from trainer.store import runs
from trainer.store.checkpoint import read_state
from trainer.training import loop

pytest.importorskip("tensorboardX")

# mid-epoch checkpoints every 2 steps: a stop resumes from inside an epoch
EVERY = "fit.checkpoint_every=2"


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    fit(run_dir, FILE_CALLBACKS)
    return run_dir


def interrupt_at(monkeypatch, owner, name, n, after=False):
    """KeyboardInterrupt on the n-th call of ``owner.name``, before it does anything
    (or, ``after``, once it has done everything)."""
    original = getattr(owner, name)
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(None)
        if len(calls) == n and not after:
            raise KeyboardInterrupt
        out = original(*args, **kwargs)
        if len(calls) == n and after:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(owner, name, wrapped)


def position(run_dir):
    state = read_state(run_dir / "checkpoints/last.h5")[0]["loop"]
    return state["epoch"], state["step"]


# (where, the call it stops at, after it ran): the 6-step epochs of the tiny run write
# ModelCheckpoint files at batches 4, 8, 12, 16 (w01-3, w02-1, w02-5, w03-3) and
# TensorBoard batch scalars at the same batches
POINTS = {
    # batch 4 trained, its logs being made: no callback has seen its end yet
    "step-logs": (Model, "metric_results", 4, False),
    # ModelCheckpoint has counted the batch as saved, its file is not written yet
    "model-checkpoint-write": (ModelCheckpoint, "_save", 2, False),
    "model-checkpoint-write-done": (ModelCheckpoint, "_save", 2, True),
    # TensorBoard's turn in on_batch_end, ModelCheckpoint's (after it) not come
    "tensorboard-batch-end": (TensorBoard, "on_batch_end", 8, False),
    # TensorBoard counted batch 4 and wrote its first scalar, not its second
    "tensorboard-scalar-write": (EventFile, "add_summary", 2, False),
    "model-checkpoint-batch-end": (ModelCheckpoint, "on_batch_end", 12, False),
    # inside epoch 2's validation: the checkpoint of step 6 of epoch 2 holds the epoch's
    # training sums, and the resume validates again
    "validation": (loop, "evaluate", 2, False),
    "model-checkpoint-epoch-end": (ModelCheckpoint, "on_epoch_end", 2, False),
    # last.h5 written, history.csv not yet
    "checkpoint-history": (runs.Run, "write_history", 4, False),
}


@pytest.mark.parametrize("point", POINTS)
def test_a_stop_anywhere_in_a_steps_hooks_resumes_exactly(tmp_path, monkeypatch,
                                                            straight, point):
    owner, name, n, after = POINTS[point]
    with monkeypatch.context() as m:
        interrupt_at(m, owner, name, n, after)
        with pytest.raises(InterruptedRun):
            fit(tmp_path, FILE_CALLBACKS, EVERY)
    resume(tmp_path)
    assert_same_run(straight, tmp_path)
    assert_same_callback_files(straight, tmp_path)


# (point, where the run resumes from, the message's words)
KEPT = [
    # the flood's case: the stop lands while w02-1.h5 (batch 8: epoch 2's second) is
    # being written. Step 8 is not committed: the checkpoint of epoch 1's end is kept,
    # not one of step 2 of epoch 2 in which ModelCheckpoint counts the file as written
    ("model-checkpoint-write", (1, 0), "was kept"),
    ("step-logs", (0, 2), "was kept"),  # batch 4's end seen by no callback
    # validation is the loop's own: stopped there, the run is at the end of the steps
    ("validation", (1, 6), "a resumable checkpoint was written after step 6 of epoch 2"),
]


@pytest.mark.parametrize("point,at,words", KEPT)
def test_where_a_stop_leaves_the_checkpoint(tmp_path, monkeypatch, point, at, words):
    with monkeypatch.context() as m:
        interrupt_at(m, *POINTS[point])
        with pytest.raises(InterruptedRun, match=words):
            fit(tmp_path, FILE_CALLBACKS, EVERY)
    assert position(tmp_path) == at
    if point == "model-checkpoint-write":
        assert not (tmp_path / "checkpoints/w02-1.h5").exists()
