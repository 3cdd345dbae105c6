"""trainer.fetch.unpickle: the pickled parts of Keras's dataset files, read without
Python's pickle module; anything but NumPy arrays and plain containers is refused."""

import os
import pickle

import numpy as np
import pytest

from trainer.errors import DataError
from trainer.fetch.unpickle import load_npz, load_pickle

OBJ = {b"batch_label": b"x\n'\"q", b"labels": [1, 2, 300, 70000, -5, 2 ** 40],
       b"data": np.arange(12, dtype=np.uint8).reshape(2, 6), b"f": 1.5, b"n": None,
       b"t": True, "u": "héllo\n", b"tup": (1, (2, 3)), b"s": np.float32(2.5)}

# A Python 2 cPickle (protocol 2) of {'labels': [1, 2], 'data': uint8 array [7, 8]}, as
# CIFAR's batches are: str as SHORT_BINSTRING, the dtype state with a byte-string '|'
PY2 = (b"\x80\x02}q\x01(U\x06labelsq\x02]q\x03(K\x01K\x02eU\x04dataq\x04cnumpy.core."
       b"multiarray\n_reconstruct\nq\x05cnumpy\nndarray\nq\x06K\x00\x85U\x01b\x87Rq\x07(K"
       b"\x01K\x02\x85cnumpy\ndtype\nq\x08U\x02u1K\x00K\x01\x87Rq\t(K\x03U\x01|NNNJ\xff\xff"
       b"\xff\xffJ\xff\xff\xff\xffK\x00tb\x89U\x02\x07\x08tbu.")


@pytest.mark.parametrize("protocol", range(6))
def test_every_protocol(tmp_path, protocol):
    path = tmp_path / "p"
    path.write_bytes(pickle.dumps(OBJ, protocol=protocol))
    got = load_pickle(path)
    assert set(got) == set(OBJ)
    for key, want in OBJ.items():
        if isinstance(want, np.ndarray):
            np.testing.assert_array_equal(got[key], want)
            assert got[key].dtype == want.dtype
        else:
            assert got[key] == want


def test_python2_cifar_style_pickle(tmp_path):
    (tmp_path / "b").write_bytes(PY2)
    got = load_pickle(tmp_path / "b")
    assert got[b"labels"] == [1, 2]
    np.testing.assert_array_equal(got[b"data"], np.array([7, 8], np.uint8))


def test_object_arrays_in_npz(tmp_path):
    x = np.empty(3, object)
    x[0], x[1], x[2] = [1, 2], [3], list(range(5))
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(3), z=np.ones((2, 3), np.float32))
    got = load_npz(tmp_path / "a.npz")
    assert [list(r) for r in got["x"]] == [[1, 2], [3], [0, 1, 2, 3, 4]]
    np.testing.assert_array_equal(got["z"], np.ones((2, 3), np.float32))


class Planted:
    def __reduce__(self):
        return (os.system, ("echo planted",))


class State:
    pass


@pytest.mark.parametrize("payload,message", [
    (pickle.dumps(Planted()), "refusing to load posix.system|refusing to load nt.system"),
    (pickle.dumps(State(), protocol=2), "refusing to load"),
    (pickle.dumps([1, 2, 3])[:-3], "truncated|malformed"),
    (b"\x80\x02\xff.", "unsupported pickle opcode"),
])
def test_refused_and_broken_files_are_data_errors(tmp_path, payload, message):
    (tmp_path / "f").write_bytes(payload)
    with pytest.raises(DataError, match=message):
        load_pickle(tmp_path / "f")
