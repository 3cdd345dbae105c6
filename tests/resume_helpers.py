"""Shared by the resume tests: tiny runs of the digits quickstart, and the comparison
that says two runs ended in the same place."""

import json
import signal

import h5py
import numpy as np

from conftest import ROOT
from trainer.app import fit as api
from trainer.callbacks.base import Callback

QUICK = ROOT / "configs" / "quickstart.yaml"
# 3 epochs × 6 steps of 16 rows; the quickstart has Dropout and Adam, so the noise
# stream and the optimizer slots both matter.
TINY = ["fit.epochs=3", "fit.steps_per_epoch=6", "fit.batch_size=16", "fit.verbose=0",
        "expect={}"]


def config(*sets):
    return api.load_config(QUICK, [*TINY, *sets])


def fit(run_dir, *sets, callbacks=()):
    return api.fit(config(*sets), run_dir=run_dir, callbacks=callbacks)


def resume(run_dir, *sets, force=False, callbacks=()):
    return api.fit(api.load_run_config(run_dir, sets), resume=run_dir, force=force,
                   callbacks=callbacks)


class StopAt(Callback):
    """Ctrl-C in a hook, the n-th time it runs: a real SIGINT, which stops a training
    loop at the next step boundary (the one after this hook's step, with a checkpoint
    of it) and anything else at once. ``at_once``: raise KeyboardInterrupt right there,
    as a second Ctrl-C (or a flood of signals) does; inside a step's hooks that keeps
    the last checkpoint written (trainer.training.loop.Loop.hooks)."""

    def __init__(self, n, hook="on_batch_end", at_once=False):
        super().__init__()
        self.n = n
        self.calls = 0
        self.at_once = at_once
        setattr(self, hook, self._count)

    def _count(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.n:
            if self.at_once:
                raise KeyboardInterrupt
            signal.raise_signal(signal.SIGINT)  # its handler runs before this returns


def contents(path):
    """Every dataset and every group attribute of an HDF5 file, by name."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
            for k, v in obj.attrs.items():
                out[f"{name}@{k}"] = v
        visit("/", f)
        f.visititems(visit)
    return out


def assert_same_run(a, b):
    """Same history.csv, and a final checkpoint with the same weights, optimizer
    slots and training state, bit for bit."""
    assert (a / "history.csv").read_text() == (b / "history.csv").read_text()
    ca, cb = contents(a / "checkpoints/last.h5"), contents(b / "checkpoints/last.h5")
    assert sorted(ca) == sorted(cb)
    for k in ca:
        if k.endswith("@state"):
            assert json.loads(ca[k]) == json.loads(cb[k]), k
        else:
            assert np.array_equal(np.asarray(ca[k]), np.asarray(cb[k])), k
    # and so the very same bytes, sealed with the same SHA-256
    assert (a / "checkpoints/last.h5").read_bytes() == (b / "checkpoints/last.h5").read_bytes()


def kernel(run_dir):
    with h5py.File(run_dir / "checkpoints/last.h5", "r") as f:
        return f["dense/dense/kernel:0"][()]


# -- the files callbacks write ------------------------------------------------------------
# a CSVLogger, TensorBoard scalars every 4 batches, and a ModelCheckpoint saving every 4
# batches (mid-epoch files) that also writes best.h5
FILE_CALLBACKS = ("callbacks=[{CSVLogger: {filename: logs/train.csv}}, "
                  "{TensorBoard: {log_dir: tb, update_freq: 4}}, "
                  "{ModelCheckpoint: {filepath: 'w{epoch:02d}-{batch}.h5', save_freq: 4}}]")


def event_scalars(folder):
    """(sub-folder, tag, step, value) of every scalar in the event files under
    ``folder``, in file order (TFRecord frames of tensorboardX Event protos)."""
    import struct

    from tensorboardX.proto import event_pb2

    out = []
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("Q", data[i:i + 8])
            event = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            for v in event.summary.value:
                if v.HasField("simple_value"):
                    out.append((path.parent.name, v.tag, event.step, v.simple_value))
    return out


def assert_same_callback_files(a, b):
    """Every file the callbacks wrote is the uninterrupted run's: the CSV byte for byte,
    the TensorBoard scalars (one event file per folder), each ModelCheckpoint file and
    best.h5 byte for byte."""
    assert (a / "logs/train.csv").read_bytes() == (b / "logs/train.csv").read_bytes()
    for run in (a, b):
        for sub in ("train", "validation"):
            assert len(list((run / "tb" / sub).glob("events.out.tfevents.*"))) == 1
    scalars = event_scalars(a / "tb")
    assert scalars and event_scalars(b / "tb") == scalars
    own = {"last.h5", "last.prev.h5"}
    files = sorted(p.name for p in (a / "checkpoints").iterdir() if p.name not in own)
    assert "best.h5" in files and len(files) >= 2  # and at least one ModelCheckpoint file
    theirs = sorted(p.name for p in (b / "checkpoints").iterdir() if p.name not in own)
    assert theirs == files, (theirs, files)  # (once seen differing under a signal flood)
    for name in files:
        assert (a / "checkpoints" / name).read_bytes() == \
            (b / "checkpoints" / name).read_bytes(), name
