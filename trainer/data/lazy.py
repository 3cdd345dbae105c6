"""Arrays read from disk a batch at a time, so a file larger than memory can be trained on.

A lazy array has ``shape``, ``dtype`` and ``len()`` like a NumPy array, but its rows are
only read by ``take(rows)``. Reads go through a small cache of whole *blocks* (runs of
rows aligned to the file's HDF5 chunks), so a batch plan that visits blocks one after
another (``pipeline.batches`` with ``block=``) reads each block from disk once per epoch,
sequentially. Memory stays bounded by a few blocks, whatever the file's size.

Under MPI (``trainer.data.ranks``) a rank reads only its rows: at start-up the whole
blocks of its share of the file (``chunks(lo, hi)``), while training only the rows of
each batch it holds (``read_exactly``: no block of rows another rank holds is read).
"""

import mmap

import numpy as np

from trainer.errors import DataError
from trainer.keras_io.h5limits import check_storage

BLOCK_BYTES = 8 << 20  # aim for blocks of about 8 MB
CACHED_BLOCKS = 2      # a batch may straddle two blocks
#: under MPI a rank reads exactly its rows of a batch when each row fills at least this
#: many bytes of its own on disk (a page, an HDF5 chunk of one row); smaller rows share
#: pages and chunks with the other ranks' rows, so the rank reads whole blocks instead
#: (one sequential read per block and epoch: reading rows one by one there measured
#: 5x (.npy) to 300x (gzip HDF5) slower, reading the same pages or chunks anyway)
EXACT_ROW_BYTES = 4096


def is_lazy(array):
    return isinstance(array, LazyArray)


class LazyArray:
    """Rows of an on-disk array, read on demand; subclasses implement ``_read(start, stop)``."""

    def __init__(self, shape, dtype, block, label):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.block = max(1, int(block))
        self.label = label  # "file.h5:/x", for messages
        self.reads = 0      # reads from disk (tests and benchmarks look at this)
        self.exact = False  # read only the rows taken, not their blocks (``read_exactly``)
        self.row_storage = self.row_bytes  # bytes on disk that hold one row alone
        self._cache = {}

    def __len__(self):
        return self.shape[0]

    @property
    def row_bytes(self):
        return self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))

    def set_block(self, rows):
        """Use blocks of ``rows`` (a split aligns all its arrays to its widest one's)."""
        if rows != self.block:
            self.block = rows
            self._cache.clear()

    @property
    def ndim(self):
        return len(self.shape)

    def __getitem__(self, rows):
        if isinstance(rows, slice):
            return self.take(np.arange(*rows.indices(len(self))))
        return self.take(rows)

    def _block(self, b):
        if b not in self._cache:
            if len(self._cache) >= CACHED_BLOCKS:
                self._cache.pop(next(iter(self._cache)))
            start = b * self.block
            try:
                self._cache[b] = self._read(start, min(start + self.block, len(self)))
            except (OSError, ValueError) as exc:  # a truncated or corrupt file
                raise DataError(f"{self.label}: cannot read rows {start}..."
                                f"{min(start + self.block, len(self)) - 1} ({exc})") from None
            self.reads += 1
        return self._cache[b]

    def read_exactly(self):
        """From now on ``take`` reads the rows it is asked for and no others (an MPI
        rank's share of each batch: the rows of a block the other ranks hold are
        theirs to read), instead of whole cached blocks — when a row fills pages or an
        HDF5 chunk of its own (``EXACT_ROW_BYTES``); else blocks stay the read."""
        if self.row_storage >= EXACT_ROW_BYTES:
            self.exact = True
            self._cache.clear()

    def _read_rows(self, rows):
        """These rows (increasing, distinct) alone: each run of neighbouring rows in one
        ``_read`` (formats with a faster way to pick rows override it)."""
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        runs = np.split(rows, breaks)
        return np.concatenate([self._read(int(run[0]), int(run[-1]) + 1) for run in runs])

    def _read_exact(self, rows):
        unique, back = np.unique(rows, return_inverse=True)
        try:
            data = self._read_rows(unique)
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.label}: cannot read rows {unique[0]}...{unique[-1]} "
                            f"({exc})") from None
        self.reads += 1
        return data[back.reshape(-1)]

    def take(self, rows, exact=None):
        """The rows asked for, in the order asked for, as an in-memory array; ``exact``
        (default: ``read_exactly``'s choice): read these rows alone, not their blocks."""
        rows = np.asarray(rows, np.int64).reshape(-1)
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        if not len(rows):
            return out
        if rows.min() < 0 or rows.max() >= len(self):
            raise IndexError(f"{self.label}: rows out of range 0..{len(self) - 1}")
        if self.exact if exact is None else exact:
            return self._read_exact(rows)
        which = rows // self.block
        for b in np.unique(which):
            hit = which == b
            out[hit] = self._block(int(b))[rows[hit] - b * self.block]
        return out

    def chunks(self, lo=0, hi=None):
        """(start, array) for each block in order: a streaming pass over the rows
        [lo, hi) (every row by default), reading only the blocks that hold them."""
        hi = len(self) if hi is None else hi
        for b in range(lo // self.block, -(-hi // self.block)):
            start = b * self.block
            rows = self._block(b)[max(lo - start, 0):hi - start]
            yield max(start, lo), rows

    def view(self, index):
        return RowView(self, index)


class H5Array(LazyArray):
    """One HDF5 dataset. The file is opened per read (cheap) so no handle stays open."""

    def __init__(self, path, name, dataset):
        row_bytes = dataset.dtype.itemsize * int(np.prod(dataset.shape[1:], dtype=np.int64))
        chunk = dataset.chunks[0] if dataset.chunks else 1
        per_block = max(1, BLOCK_BYTES // max(1, row_bytes * chunk))
        super().__init__(dataset.shape, dataset.dtype, chunk * per_block, f"{path}:/{name}")
        self.path, self.name = path, name
        if chunk > 1:  # a chunk is read (and decompressed) whole: its rows share it
            self.row_storage = 0

    def _read(self, start, stop):
        import h5py

        with h5py.File(self.path, "r") as f:
            ds = f[self.name]
            check_storage(ds, self.label)  # the file may have been replaced since
            return ds[start:stop]

    def _read_rows(self, rows):
        import h5py

        with h5py.File(self.path, "r") as f:
            ds = f[self.name]
            check_storage(ds, self.label)
            return ds[rows]  # increasing row numbers: one selection, one read


class MemmapArray(LazyArray):
    """A memory-mapped .npy file: pages are read by the OS as rows are touched. Once a
    block is copied out, its pages are released from this process (MADV_DONTNEED; they
    stay in the OS's file cache), so resident memory stays bounded here too."""

    def __init__(self, path, array):
        row_bytes = array.dtype.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
        super().__init__(array.shape, array.dtype, BLOCK_BYTES // max(1, row_bytes), str(path))
        self.array = array

    def _read(self, start, stop):
        out = np.array(self.array[start:stop])
        self._release(start, stop)
        return out

    def _read_rows(self, rows):
        out = np.array(self.array[rows])  # the pages of these rows only
        self._release(int(rows[0]), int(rows[-1]) + 1)
        return out

    def _release(self, start, stop):
        m = getattr(self.array, "_mmap", None)
        if m is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        # numpy maps from the allocation-granularity boundary below the data's offset
        base = self.array.offset % mmap.ALLOCATIONGRANULARITY
        first = base + start * self.row_bytes
        last = base + stop * self.row_bytes
        first -= first % mmap.PAGESIZE
        try:
            m.madvise(mmap.MADV_DONTNEED, first, min(last, len(m)) - first)
        except (OSError, ValueError):
            pass  # only an optimisation


class RowView(LazyArray):
    """Some rows of a lazy array (a validation split of it): ``index`` in increasing
    order, so neighbouring rows of the view stay neighbours on disk."""

    def __init__(self, base, index):
        index = np.asarray(index, np.int64)
        super().__init__((len(index), *base.shape[1:]), base.dtype, base.block, base.label)
        self.base, self.index = base, index

    def take(self, rows, exact=None):
        return self.base.take(self.index[np.asarray(rows, np.int64)], exact)

    def set_block(self, rows):
        self.block = rows
        self.base.set_block(rows)

    def read_exactly(self):
        self.base.read_exactly()
        self.exact = self.base.exact

    def chunks(self, lo=0, hi=None):
        hi = len(self) if hi is None else hi
        for start in range(lo, hi, self.block):
            yield start, self.take(np.arange(start, min(start + self.block, hi)))

    def view(self, index):
        return RowView(self.base, self.index[np.asarray(index, np.int64)])


def chunked(array, block=65536, lo=0, hi=None):
    """(start, rows) pieces of the rows [lo, hi) (every row by default) of an in-memory
    or lazy array, for streaming statistics."""
    if is_lazy(array):
        yield from array.chunks(lo, hi)
        return
    hi = len(array) if hi is None else hi
    for start in range(lo, hi, block):
        yield start, array[start:min(start + block, hi)]
