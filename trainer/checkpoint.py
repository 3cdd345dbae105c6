"""HDF5 checkpoints in Keras's weight layout, plus what resuming needs.

Layout (the one Keras 2 ``save_weights('x.h5')`` writes, extended):

    /                       attrs: layer_names, backend, keras_version, trainer_format
    /<layer>/               attrs: weight_names = ["<layer>/kernel:0", ...]
    /<layer>/<layer>/kernel:0   one dataset per weight
    /optimizer_weights/     optimizer slots and iteration count (ours)
    /trainer_state/         attrs: state (JSON: epoch, history, callback and RNG state)
    /trainer_state/arrays/  arrays of that state (preprocessing statistics, metric sums)

Every write goes to a temporary file in the same folder, is flushed and fsynced, then
renamed over the target, so a crash leaves the previous checkpoint intact.
"""

import json

import numpy as np

from trainer.errors import ConfigError, DataError
from trainer.fileio import atomic_path
from trainer.keras_io import h5 as keras_h5

FORMAT = 1


def save(path, model, state=None, arrays=None):
    """Write weights (+ optimizer, + trainer state) atomically to ``path``."""
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            write_weights(f, model)
            if model.optimizer is not None and model.optimizer.slots is not None:
                g = f.create_group("optimizer_weights")
                for k, v in model.optimizer.get_state().items():
                    g.create_dataset(k, data=v)
            if state is not None:
                g = f.create_group("trainer_state")
                g.attrs["state"] = json.dumps(state)
                a = g.create_group("arrays")
                for k, v in (arrays or {}).items():
                    a.create_dataset(k, data=v)


def write_weights(f, model):
    """Weights in Keras 2's HDF5 layout (trainer/keras_io/h5.py), marked as ours."""
    keras_h5.write_weights(f, model)
    f.attrs["trainer_format"] = FORMAT


def load(path, model, with_optimizer=True):
    """Load weights (and optimizer state) into ``model``; return (state, arrays)."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise DataError(f"checkpoint not found: {path}") from None
    except OSError as exc:
        raise DataError(f"checkpoint {path} is not a readable HDF5 file ({exc})") from None
    with f:
        read_weights(f, model, path)
        if with_optimizer and "optimizer_weights" in f and model.optimizer is not None:
            g = f["optimizer_weights"]
            state = {}
            g.visititems(lambda k, v: state.__setitem__(k, v[()]) if hasattr(v, "shape") else None)
            model.optimizer.set_state(state, model.params())
        if "trainer_state" in f:
            g = f["trainer_state"]
            state = json.loads(g.attrs["state"])
            arrays = {}
            g["arrays"].visititems(
                lambda k, v: arrays.__setitem__(k, v[()]) if hasattr(v, "shape") else None)
            return state, arrays
    return None, {}


def read_weights(f, model, path, by_name=True, skip_mismatch=False, strict=True):
    """Keras HDF5 weights (at the root or under model_weights/) → model, by layer name."""
    keras_h5.read_weights(f, model, path, by_name, skip_mismatch, strict)
