"""The rows of the global batch this rank holds while one step runs.

A single process is the world of one rank holding every row, so nothing here changes
its numbers. Layers ask: ``draw`` (a random array for the global batch, of which this
rank keeps its rows: a sample's dropout or noise mask depends on its position in the
global batch, not on the rank that holds it), ``sum_over_batch`` (a sum over the
global batch's rows: BatchNormalization's statistics) and ``batch_size`` (the global
batch's size: loss and activity-penalty normalisation).
"""

import contextlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Shard:
    world: object  # trainer.distributed.world.World
    global_rows: int  # rows in the global batch
    lo: int  # this rank's rows: [lo, hi) of the global batch
    hi: int
    #: the rows a batch statistic is taken over (BatchNormalization's): a micro-batch's
    #: under gradient accumulation, over every rank; None: the global batch's
    stat_rows: int | None = None

    @property
    def rows(self):
        return self.hi - self.lo


_state = {"shard": None, "fold": 1}


def split(n, size):
    """[lo, hi) of each of ``size`` ranks over ``n`` rows: contiguous, in rank order,
    the first ``n % size`` ranks one row more."""
    base, extra = divmod(n, size)
    bounds, lo = [], 0
    for r in range(size):
        hi = lo + base + (r < extra)
        bounds.append((lo, hi))
        lo = hi
    return bounds


def current():
    return _state["shard"]


@contextlib.contextmanager
def active(shard):
    previous = _state["shard"]
    _state["shard"] = shard
    try:
        yield shard
    finally:
        _state["shard"] = previous


@contextlib.contextmanager
def folded(k):
    """While a wrapper runs its layer on ``k`` leading-axis entries per sample
    (TimeDistributed folds time into the batch axis): draws and sums know the factor
    even on a rank whose share is empty (whose arrays cannot tell it)."""
    previous = _state["fold"]
    _state["fold"] = previous * k
    try:
        yield
    finally:
        _state["fold"] = previous


def _factor(n_local):
    """How many leading-axis entries each sample spans (TimeDistributed folds time
    into the batch axis), or None when ``n_local`` is not this rank's batch."""
    s = _state["shard"]
    if s is None:
        return None
    fold = _state["fold"]
    if fold > 1:
        return fold if n_local == s.rows * fold else None
    if s.rows == 0:
        return None if n_local else 1
    if n_local % s.rows:
        return None
    return n_local // s.rows


def draw(fn, shape):
    """``fn(shape)`` — a random array — for the global batch, this rank's rows of it.
    Every rank draws the whole batch's array from the same stream, so the stream
    advances as in a single process and row i is the same on every rank."""
    k = _factor(shape[0]) if len(shape) else None
    if k is None:
        return fn(shape)
    s = _state["shard"]
    full = fn((s.global_rows * k, *shape[1:]))
    return full[s.lo * k:s.hi * k]


def batch_size(n_local):
    """The size of the batch a loss is normalised by: the global batch's."""
    k = _factor(n_local)
    return n_local if k is None else _state["shard"].global_rows * k


def statistics_rows(n_local):
    """The rows a batch statistic is taken over: the micro-batch's over every rank
    (``batch_size``'s global batch without accumulation); ``n_local`` alone."""
    k = _factor(n_local)
    if k is None:
        return n_local
    s = _state["shard"]
    return (s.global_rows if s.stat_rows is None else s.stat_rows) * k


def sum_over_batch(arrays):
    """Sums over all ranks of per-rank partial sums (a list of arrays); unchanged in a
    single process."""
    s = _state["shard"]
    if s is None:
        return list(arrays)
    return s.world.allreduce_sum(list(arrays))


def total(value):
    """A scalar summed over the ranks (a count such as a mask's unmasked steps)."""
    s = _state["shard"]
    if s is None:
        return value
    return float(s.world.allreduce_sum([np.float64(value)])[0])
