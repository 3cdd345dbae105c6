"""A split's arrays, read a batch at a time; and the batch plan of an epoch."""

import numpy as np

from trainer.data.lazy import is_lazy
from trainer.errors import DataError

PROBE_ROWS = 256


class Split:
    """The arrays of one split, keyed by model input / output name.

    ``transform`` (a fitted Preprocessor) is applied per batch in ``take`` — set for lazy
    splits. ``check(xs, ys, rows)`` is called on every batch taken when set (lazy splits
    check NaN/Inf and labels per batch, since they are never whole in memory).
    ``rows`` are the row numbers in the source this split came from (validation split).
    """

    def __init__(self, x, y, sample_weight=None, transform=None, rows=None):
        self.x = x  # name → array
        self.y = y  # name → array (empty for predict)
        self.sample_weight = sample_weight
        self.transform = transform
        self.rows = rows
        self.check = None
        for role, arrays in (("x", x), ("y", y), ("sample_weight", {"": sample_weight})):
            for k, v in arrays.items():
                if v is not None and not getattr(v, "shape", ()):
                    raise DataError(f"{role}{f'[{k}]' if k else ''} is a single value "
                                    f"({np.asarray(v)!r}), not an array with one row per "
                                    f"sample")
        lengths = {f"x[{k}]": len(v) for k, v in x.items()}
        lengths.update({f"y[{k}]": len(v) for k, v in y.items()})
        if sample_weight is not None:
            lengths["sample_weight"] = len(sample_weight)
        if len(set(lengths.values())) > 1:
            raise DataError("inputs and labels have different numbers of rows: " +
                            ", ".join(f"{k}: {n}" for k, n in lengths.items()))
        self.n = next(iter(lengths.values()), 0)
        lazy = [a for a in self.arrays() if is_lazy(a)]
        if lazy:  # read every array in the blocks of the one with the widest rows
            rows = max(lazy, key=lambda a: a.row_bytes).block
            for a in lazy:
                a.set_block(rows)

    def __len__(self):
        return self.n

    def arrays(self):
        yield from self.x.values()
        yield from self.y.values()
        if self.sample_weight is not None:
            yield self.sample_weight

    @property
    def lazy(self):
        return any(is_lazy(a) for a in self.arrays())

    @property
    def block(self):
        """Rows per disk block, for chunk-aligned shuffling (None when all in memory)."""
        return next((a.block for a in self.arrays() if is_lazy(a)), None)

    def take(self, rows, exact=None):
        """(list of x arrays, list of y arrays, sample weights) for these rows
        (``exact``: lazy arrays read these rows alone, see ``LazyArray.take``)."""
        rows = np.asarray(rows, np.int64)
        get = lambda a: a.take(rows, exact) if is_lazy(a) else a[rows]  # noqa: E731
        x = {k: get(v) for k, v in self.x.items()}
        y = {k: get(v) for k, v in self.y.items()}
        if self.transform is not None:
            x = {k: self.transform.apply_one("x", k, v) for k, v in x.items()}
            y = {k: self.transform.apply_one("y", k, v) for k, v in y.items()}
        xs, ys = list(x.values()), list(y.values())
        sw = None if self.sample_weight is None else \
            sample_weight_array(get(self.sample_weight))
        if self.check is not None:
            self.check(xs, ys, rows)
        return xs, ys, sw

    def subset(self, rows):
        """The split of these rows (in increasing order for lazy splits)."""
        rows = np.asarray(rows, np.int64)
        pick = lambda a: a.view(rows) if is_lazy(a) else a[rows]  # noqa: E731
        return Split({k: pick(v) for k, v in self.x.items()},
                     {k: pick(v) for k, v in self.y.items()},
                     None if self.sample_weight is None else pick(self.sample_weight),
                     self.transform, rows if self.rows is None else self.rows[rows])

    def probe(self):
        """An in-memory, preprocessed split of the first rows of a lazy split (for
        shape and dtype checks before training); the split itself when in memory."""
        if not self.lazy and self.transform is None:
            return self
        xs, ys, sw = self.take(np.arange(min(len(self), PROBE_ROWS)), exact=True)
        return Split(dict(zip(self.x, xs)), dict(zip(self.y, ys)), sw)

    def labels(self, world=None):
        """Class ids (N,) of the first output, preprocessed (for class_weight); under
        MPI (``world``) each rank reads its share of a lazy file (trainer.data.ranks)."""
        from trainer.data.ranks import streamed

        (name, y), = list(self.y.items())[:1]
        if self.transform is None and not is_lazy(y):
            return class_ids(y)
        ids = streamed(y, world, lambda c: class_ids(
            self.transform.apply_one("y", name, c) if self.transform else c))
        return np.zeros(0, np.int64) if ids is None else ids


def class_ids(y):
    """Labels as class ids (N,): one-hot rows by argmax, ids as they are."""
    y = np.asarray(y)
    return np.argmax(y, axis=-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(-1)


def batches(n, batch_size, shuffle, seed, epoch, block=None):
    """Row indices per batch: a pure function of the seed and the epoch.

    With ``block`` (lazy sources), shuffling permutes the order of blocks of ``block``
    rows and the rows within each block, so reads stay sequential on disk: each block
    is read once per epoch, and every row still comes exactly once.
    """
    order = np.arange(n)
    if shuffle and block and block < n:
        rng = np.random.default_rng([seed, epoch, 0x5EED])
        starts = rng.permutation(-(-n // block)) * block
        order = np.concatenate([s + rng.permutation(min(block, n - s)) for s in starts])
    elif shuffle:
        order = np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def sample_weight_array(sw, keypath=None):
    """Sample weights as float64 (N,) — one per sample — or (N, T), one per timestep of
    a sequence output (Keras's temporal weights); (N, 1) is (N,)."""
    sw = np.asarray(sw, np.float64)
    if sw.ndim == 2 and sw.shape[1] == 1 or sw.ndim == 0:
        return sw.reshape(-1)
    if sw.ndim > 2:
        where = f"{'.'.join(keypath)}: " if keypath else ""
        raise DataError(f"{where}sample_weight has shape {sw.shape}; it takes one weight "
                        f"per sample (N,) or per timestep (N, T)")
    return sw
