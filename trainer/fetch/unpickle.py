"""Read the pickled parts of Keras's dataset files without Python's pickle module.

CIFAR's python batches are pickled dicts, and the ragged sequences of imdb.npz and
reuters.npz are ``dtype=object`` arrays, which ``.npy`` stores as a pickle. This is a
small interpreter of the pickle opcodes such files use (protocols 0–5's data opcodes)
that builds only NumPy arrays, dtypes, NumPy scalars and plain containers (dict, list,
tuple, bytes, str, numbers): a file naming any other global is refused, so a planted
file cannot run code, and trainer never imports ``pickle``.
"""

import io
import struct
import zipfile

import numpy as np

from trainer.errors import DataError


class UnpicklingError(ValueError):
    pass


def _latin1_bytes(text, encoding="latin1"):
    """What Python 3 protocol-2 pickles call to rebuild bytes (``_codecs.encode``),
    limited to the one codec they use."""
    if encoding not in ("latin1", "latin-1"):
        raise UnpicklingError(f"refusing codec {encoding!r} in a dataset file")
    return text.encode("latin1")


_RECONSTRUCT = np.ndarray((0,), np.uint8).__reduce__()[0]
_SCALAR = np.float64(0).__reduce__()[0]
_FROMBUFFER = np.arange(2).__reduce_ex__(5)[0]  # protocol 5's array rebuild
ALLOWED = {
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
}


def _global(module, name):
    try:
        return ALLOWED[(module, name)]
    except KeyError:
        raise UnpicklingError(f"refusing to load {module}.{name}: only NumPy arrays and "
                              f"plain containers are read from dataset files") from None


class _Mark:
    pass


class Reader:
    """``Reader(file, encoding).load()``: one pickled object. ``encoding``: how Python 2
    strings are read, ``bytes`` (kept as bytes, as Keras reads CIFAR) or a text codec."""

    def __init__(self, f, encoding="bytes"):
        self.f, self.encoding = f, encoding
        self.stack, self.memo = [], {}

    # -- helpers ------------------------------------------------------------
    def _read(self, n):
        data = self.f.read(n)
        if len(data) != n:
            raise UnpicklingError("pickle data was truncated")
        return data

    def _unpack(self, fmt):
        return struct.unpack(fmt, self._read(struct.calcsize(fmt)))[0]

    def _line(self):
        line = self.f.readline()
        if not line.endswith(b"\n"):
            raise UnpicklingError("pickle data was truncated")
        return line[:-1]

    def _py2str(self, data):
        return data if self.encoding == "bytes" else data.decode(self.encoding)

    def _pop_mark(self):
        for k in range(len(self.stack) - 1, -1, -1):
            if self.stack[k] is _MARK:
                items = self.stack[k + 1:]
                del self.stack[k:]
                return items
        raise UnpicklingError("could not find MARK")

    # -- the machine --------------------------------------------------------
    def load(self):
        while True:
            op = self._read(1)
            if op == b".":
                if len(self.stack) != 1:
                    raise UnpicklingError("malformed pickle: stack not one object at STOP")
                return self.stack.pop()
            handler = OPS.get(op)
            if handler is None:
                raise UnpicklingError(f"unsupported pickle opcode {op!r}")
            handler(self)


_MARK = _Mark()


def _reduce(r):
    args = r.stack.pop()
    func = r.stack.pop()
    if func not in ALLOWED.values() or not isinstance(args, tuple):
        raise UnpicklingError("refusing a call that is not a NumPy constructor")
    r.stack.append(func(*args))


def _build(r):
    state = r.stack.pop()
    obj = r.stack[-1]
    if not isinstance(obj, (np.ndarray, np.dtype)):
        raise UnpicklingError(f"refusing to set the state of a {type(obj).__name__}")
    obj.__setstate__(state)


def _setitems(r):
    items = r._pop_mark()
    d = r.stack[-1]
    for k in range(0, len(items), 2):
        d[items[k]] = items[k + 1]


def _setitem(r):
    value, key = r.stack.pop(), r.stack.pop()
    r.stack[-1][key] = value


def _int_line(r):
    text = r._line()
    r.stack.append({b"00": False, b"01": True}.get(text) if text in (b"00", b"01")
                   else int(text))


def _string_line(r):
    """STRING (protocol 0): a quoted, backslash-escaped Python 2 string."""
    import codecs

    text = r._line()
    if len(text) < 2 or text[:1] != text[-1:] or text[:1] not in (b"'", b'"'):
        raise UnpicklingError("malformed STRING in pickle data")
    r.stack.append(r._py2str(codecs.escape_decode(text[1:-1])[0]))


def _long_n(r, size_fmt):
    n = r._unpack(size_fmt)
    r.stack.append(int.from_bytes(r._read(n), "little", signed=True))


def _global_line(r):
    module = r._line().decode("utf-8")
    name = r._line().decode("utf-8")
    r.stack.append(_global(module, name))


def _stack_global(r):
    name, module = r.stack.pop(), r.stack.pop()
    r.stack.append(_global(module, name))


def _tuple_n(n):
    def op(r):
        items = r.stack[len(r.stack) - n:] if n else []
        del r.stack[len(r.stack) - n:]
        r.stack.append(tuple(items))
    return op


def _dict(r):
    items = r._pop_mark()
    r.stack.append({items[k]: items[k + 1] for k in range(0, len(items), 2)})


OPS = {
    b"\x80": lambda r: r._read(1),                                  # PROTO
    b"\x95": lambda r: r._read(8),                                  # FRAME
    b"(": lambda r: r.stack.append(_MARK),                          # MARK
    b"0": lambda r: r.stack.pop(),                                  # POP
    b"1": lambda r: r._pop_mark(),                                  # POP_MARK
    b"2": lambda r: r.stack.append(r.stack[-1]),                    # DUP
    b"N": lambda r: r.stack.append(None),                           # NONE
    b"\x88": lambda r: r.stack.append(True),                        # NEWTRUE
    b"\x89": lambda r: r.stack.append(False),                       # NEWFALSE
    b"I": _int_line,                                                # INT
    b"L": lambda r: r.stack.append(int(r._line().rstrip(b"L"))),    # LONG
    b"J": lambda r: r.stack.append(r._unpack("<i")),                # BININT
    b"K": lambda r: r.stack.append(r._unpack("<B")),                # BININT1
    b"M": lambda r: r.stack.append(r._unpack("<H")),                # BININT2
    b"\x8a": lambda r: _long_n(r, "<B"),                            # LONG1
    b"\x8b": lambda r: _long_n(r, "<i"),                            # LONG4
    b"F": lambda r: r.stack.append(float(r._line())),               # FLOAT
    b"G": lambda r: r.stack.append(r._unpack(">d")),                # BINFLOAT
    b"U": lambda r: r.stack.append(r._py2str(r._read(r._unpack("<B")))),   # SHORT_BINSTRING
    b"T": lambda r: r.stack.append(r._py2str(r._read(r._unpack("<i")))),   # BINSTRING
    b"C": lambda r: r.stack.append(r._read(r._unpack("<B"))),       # SHORT_BINBYTES
    b"B": lambda r: r.stack.append(r._read(r._unpack("<I"))),       # BINBYTES
    b"\x8e": lambda r: r.stack.append(r._read(r._unpack("<Q"))),    # BINBYTES8
    b"\x96": lambda r: r.stack.append(bytearray(r._read(r._unpack("<Q")))),  # BYTEARRAY8
    b"S": _string_line,                                             # STRING
    b"V": lambda r: r.stack.append(r._line().decode("raw-unicode-escape")),  # UNICODE
    b"\x8c": lambda r: r.stack.append(r._read(r._unpack("<B")).decode("utf-8")),
    b"X": lambda r: r.stack.append(r._read(r._unpack("<I")).decode("utf-8")),
    b"\x8d": lambda r: r.stack.append(r._read(r._unpack("<Q")).decode("utf-8")),
    b"}": lambda r: r.stack.append({}),                             # EMPTY_DICT
    b"]": lambda r: r.stack.append([]),                             # EMPTY_LIST
    b")": lambda r: r.stack.append(()),                             # EMPTY_TUPLE
    b"t": lambda r: r.stack.append(tuple(r._pop_mark())),           # TUPLE
    b"\x85": _tuple_n(1), b"\x86": _tuple_n(2), b"\x87": _tuple_n(3),
    b"l": lambda r: r.stack.append(r._pop_mark()),                  # LIST
    b"d": _dict,                                                    # DICT
    b"a": lambda r: r.stack[-2].append(r.stack.pop()),              # APPEND
    b"e": lambda r: (lambda items: r.stack[-1].extend(items))(r._pop_mark()),  # APPENDS
    b"s": _setitem,                                                 # SETITEM
    b"u": _setitems,                                                # SETITEMS
    b"q": lambda r: r.memo.__setitem__(r._unpack("<B"), r.stack[-1]),    # BINPUT
    b"r": lambda r: r.memo.__setitem__(r._unpack("<I"), r.stack[-1]),    # LONG_BINPUT
    b"\x94": lambda r: r.memo.__setitem__(len(r.memo), r.stack[-1]),     # MEMOIZE
    b"p": lambda r: r.memo.__setitem__(int(r._line()), r.stack[-1]),     # PUT
    b"h": lambda r: r.stack.append(r.memo[r._unpack("<B")]),        # BINGET
    b"j": lambda r: r.stack.append(r.memo[r._unpack("<I")]),        # LONG_BINGET
    b"g": lambda r: r.stack.append(r.memo[int(r._line())]),         # GET
    b"c": _global_line,                                             # GLOBAL
    b"\x93": _stack_global,                                         # STACK_GLOBAL
    b"R": _reduce,                                                  # REDUCE
    b"b": _build,                                                   # BUILD
}


def _load(f, encoding):
    try:
        return Reader(f, encoding).load()
    except (IndexError, KeyError, TypeError, struct.error, UnicodeDecodeError) as exc:
        raise UnpicklingError(f"malformed pickle data ({type(exc).__name__}: {exc})") from None


def load_pickle(path, encoding="bytes"):
    """The object pickled in ``path`` (Python 2 strings stay bytes by default)."""
    try:
        with open(path, "rb") as f:
            return _load(f, encoding)
    except (UnpicklingError, ValueError) as exc:
        raise DataError(f"{path}: not a dataset file trainer can read ({exc}); delete it "
                        f"to download it again") from None


def load_npz(path):
    """Every array of an ``.npz`` as ``name → ndarray``; object arrays through the
    restricted reader above, all others read as raw data."""
    try:
        out = {}
        with zipfile.ZipFile(path) as z:
            for member in z.namelist():
                if member.endswith(".npy"):
                    with z.open(member) as f:
                        out[member[:-4]] = _read_npy(io.BufferedReader(f))
        return out
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as exc:
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
    array = _load(f, "latin1")
    if not isinstance(array, np.ndarray):
        raise UnpicklingError(f"expected a pickled array, got {type(array).__name__}")
    return array
