"""HDF5 checkpoints in Keras's weight layout, plus what resuming needs.

Layout (the one Keras 2 ``save_weights('x.h5')`` writes, extended):

    (user block)            512 bytes before the HDF5 data: "trainer-checkpoint sha256:<hex>"
    /                       attrs: layer_names, backend, keras_version, trainer_format
    /<layer>/               attrs: weight_names = ["<layer>/kernel:0", ...]
    /<layer>/<layer>/kernel:0   one dataset per weight
    /optimizer_weights/     optimizer slots and iteration count (ours)
    /trainer_state/         attrs: state (JSON: epoch and step, history, callback and
                            RNG state, config hash; see trainer.training.loop.Loop.get_state)
    /trainer_state/arrays/  arrays of that state (preprocessing statistics, metric sums)

Every write goes to a temporary file in the same folder, is flushed and fsynced, then
renamed over the target, so a crash leaves the previous checkpoint intact; with
``keep_previous`` the replaced file is kept too (``last.prev.h5``). The file starts
with an HDF5 user block (which HDF5 readers, Keras's included, skip) holding the
SHA-256 of every byte after it; it is checked on load, so a truncated or corrupt file
is reported as such instead of resuming from garbage.
"""

import contextlib
import hashlib
import json

import numpy as np

from trainer.errors import DataError
from trainer.fileio import atomic_path
from trainer.keras_io.h5limits import attr, check_dataset, open_file
from trainer.keras_io import h5 as keras_h5
from trainer.fileio import regular_file

FORMAT = 2
USERBLOCK = 512  # bytes before the HDF5 data; HDF5 looks for its signature at 0, 512, ...
SEAL = b"trainer-checkpoint sha256:"


def _flat(group):
    """name → array of every dataset under an HDF5 group (sizes checked first)."""
    out = {}

    def read(name, obj):
        if hasattr(obj, "shape"):
            check_dataset(obj, f"{obj.file.filename}:{obj.name}")
            out[name] = obj[()]
    group.visititems(read)
    return out


def save(path, model, state=None, arrays=None, keep_previous=None, root=None):
    """Write weights (+ optimizer, + trainer state) atomically to ``path`` (inside the
    run folder ``root``, when given: trainer.fileio.confined)."""
    import h5py

    with atomic_path(path, keep_previous=keep_previous, root=root) as tmp:
        with h5py.File(tmp, "w", userblock_size=USERBLOCK) as f:
            write_weights(f, model)
            if model.optimizer is not None and model.optimizer.slots is not None:
                g = f.create_group("optimizer_weights")
                for k, v in model.optimizer.get_state().items():
                    g.create_dataset(k, data=v)
            if state is not None:
                g = f.create_group("trainer_state")
                g.attrs["state"] = json.dumps(state, default=_json_default)
                a = g.create_group("arrays")
                for k, v in (arrays or {}).items():
                    a.create_dataset(k, data=v)
        _seal(tmp)


def _json_default(value):
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"not JSON-able in a checkpoint state: {value!r}")


def _digest(fh):
    fh.seek(USERBLOCK)
    h = hashlib.sha256()
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest().encode()


def _seal(path):
    """Write the SHA-256 of the HDF5 data into the file's user block."""
    with open(path, "r+b") as fh:
        digest = _digest(fh)
        fh.seek(0)
        fh.write(SEAL + digest + b"\n")


def _check_seal(path, resumable):
    """DataError naming ``path`` if its bytes do not match its seal. A file without a
    seal (a Keras weights file) passes unless training is to resume from it."""
    try:
        regular_file(path, "checkpoint")
        with open(path, "rb") as fh:
            head = fh.read(len(SEAL) + 64)
            if not head.startswith(SEAL):
                if resumable:
                    raise DataError(f"checkpoint {path} is truncated or corrupt, or not "
                                    f"a trainer checkpoint: it does not start with a "
                                    f"trainer checksum")
                return
            if _digest(fh) != head[len(SEAL):]:
                raise DataError(f"checkpoint {path} is truncated or corrupt: its content "
                                f"does not match its SHA-256 checksum")
    except FileNotFoundError:
        raise DataError(f"checkpoint not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"checkpoint {path} is a folder, not a file") from None


@contextlib.contextmanager
def _reading(path):
    """Open ``path`` for reading; damage found while reading becomes a DataError."""
    try:
        with open_file(path) as f:
            yield f
    except FileNotFoundError:
        raise DataError(f"checkpoint not found: {path}") from None
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise DataError(f"checkpoint {path} is truncated or corrupt "
                        f"({type(exc).__name__}: {exc})") from None


def _check(f, path):
    """The checks a resume needs beyond the checksum: format and training state."""
    version = int(attr(f, "trainer_format", path, 0))
    if version != FORMAT:
        raise DataError(f"checkpoint {path} has format {version}; this trainer resumes "
                        f"format {FORMAT}")
    if "trainer_state" not in f:
        raise DataError(f"checkpoint {path} holds weights only, no training state")


def verify(path):
    """Raise DataError naming ``path`` unless it is a complete, uncorrupted checkpoint
    that training can resume from (checksum, format and training state)."""
    _check_seal(path, resumable=True)
    with _reading(path) as f:
        _check(f, path)


def newest_valid(paths):
    """The first of ``paths`` (newest first) that verifies, and the DataErrors of
    those before it. Raises DataError listing every problem when none does."""
    problems = []
    for path in paths:
        if not path.exists() and path != paths[0]:
            continue
        try:
            verify(path)
            return path, problems
        except DataError as exc:
            problems.append(exc)
    raise DataError("no checkpoint to resume from: " + "; ".join(str(p) for p in problems))


def save_weights(path, model, root=None):
    """The weights alone (Keras HDF5 layout, at the root), written atomically; inside
    the folder ``root`` when given (trainer.fileio.confined)."""
    import h5py

    with atomic_path(path, root=root) as tmp:
        with h5py.File(tmp, "w") as f:
            write_weights(f, model)


def write_weights(f, model):
    """Weights in Keras 2's HDF5 layout (trainer/keras_io/h5.py), marked as ours."""
    keras_h5.write_weights(f, model)
    f.attrs["trainer_format"] = FORMAT


def load(path, model, with_optimizer=True):
    """Load weights (and optimizer state) into ``model``; return (state, arrays).
    The checksum, when the file has one, is checked first."""
    _check_seal(path, resumable=False)
    with _reading(path) as f:
        read_weights(f, model, path)
        if with_optimizer and "optimizer_weights" in f and model.optimizer is not None:
            model.optimizer.set_state(_flat(f["optimizer_weights"]), model.params())
        if "trainer_state" in f:
            return _state(f, path)
    return None, {}


def _state(f, path):
    g = f["trainer_state"]
    return json.loads(attr(g, "state", path, "{}")), _flat(g["arrays"])


def read_state(path):
    """(state, arrays) of a checkpoint's training state, without a model."""
    with _reading(path) as f:
        if "trainer_state" not in f:
            raise DataError(f"checkpoint {path} holds weights only, no training state")
        return _state(f, path)


def read_weights(f, model, path, by_name=True, skip_mismatch=False, strict=True):
    """Keras HDF5 weights (at the root or under model_weights/) → model, by layer name."""
    keras_h5.read_weights(f, model, path, by_name, skip_mismatch, strict)
