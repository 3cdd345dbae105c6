"""Shared by the resume tests: tiny runs of the digits quickstart, and the comparison
that says two runs ended in the same place."""

import json

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
    """Raises KeyboardInterrupt (as Ctrl-C would) in a hook, the n-th time it runs."""

    def __init__(self, n, hook="on_batch_end"):
        super().__init__()
        self.n = n
        self.calls = 0
        setattr(self, hook, self._count)

    def _count(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt


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
