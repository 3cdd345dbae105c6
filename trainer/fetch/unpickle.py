"""Read the pickled parts of Keras's dataset files without running their code.

CIFAR's python batches are pickled dicts, and the ragged sequences of imdb.npz and
reuters.npz are ``dtype=object`` arrays, which ``.npy`` stores as a pickle. The
unpickler here builds only NumPy arrays, dtypes, NumPy scalars and the containers
pickle makes by itself (dict, list, tuple, bytes, str, numbers): any other global a
file names is refused with an error, so a planted file cannot run code.
"""

import pickle
import zipfile

import numpy as np

from trainer.errors import DataError

_RECONSTRUCT = np.ndarray((0,), np.uint8).__reduce__()[0]
_SCALAR = np.float64(0).__reduce__()[0]


def _latin1_bytes(text, encoding="latin1"):
    """What Python 3 protocol-2 pickles call to rebuild bytes (``_codecs.encode``),
    limited to the one codec they use."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing codec {encoding!r} in a dataset file")
    return text.encode("latin1")


_ALLOWED = {
    ("_codecs", "encode"): _latin1_bytes,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only NumPy arrays and plain "
                f"containers are read from dataset files") from None


def load_pickle(path, encoding="bytes"):
    """The object pickled in ``path`` (Python 2 pickles: byte strings stay bytes)."""
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, encoding=encoding).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: not a dataset file trainer can read ({exc}); delete it "
                        f"to download it again") from None


def load_npz(path):
    """Every array of an ``.npz`` as ``name → ndarray``; object arrays through the
    restricted unpickler, all others without pickle."""
    try:
        out = {}
        with zipfile.ZipFile(path) as z:
            for member in z.namelist():
                if member.endswith(".npy"):
                    with z.open(member) as f:
                        out[member[:-4]] = _read_npy(f)
        return out
    except (zipfile.BadZipFile, pickle.UnpicklingError, ValueError, EOFError,
            OSError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc}); delete it to "
                        f"download it again") from None


def _read_npy(f):
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    if not dtype.hasobject:
        count = int(np.prod(shape, dtype=np.int64))
        data = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype, count=count)
        return data.reshape(shape, order="F" if fortran else "C").copy()
    array = RestrictedUnpickler(f, encoding="latin1").load()
    if not isinstance(array, np.ndarray):
        raise ValueError(f"expected a pickled array, got {type(array).__name__}")
    return array
