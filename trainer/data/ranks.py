"""What an MPI rank reads of a lazy source: its share before training, its rows after.

At start-up the ranks split a lazily read split's rows into contiguous shares of whole
disk blocks (``share``: rank 0 the first blocks, the last rank the last), so no block
is read by two ranks; each streams its share once (preprocessing statistics, the NaN
check fused with them, class counts) and the partial results are combined
(``trainer.distributed.startup.gathered``: in rank order, so in the order of the rows,
and a failure on any rank is every rank's). In-memory sources are whole on every rank
and are computed there as in one process. ``world`` None: one process, every row.
While training a rank reads its rows of each batch (``read_exactly``).
"""

import numpy as np

from trainer.data.lazy import RowView, chunked, is_lazy
from trainer.distributed import shard, startup


def spread(array, world):
    """Whether the ranks share the reading of ``array`` (lazy, under MPI)."""
    return world is not None and is_lazy(array)


def share(array, world):
    """[lo, hi): the rows of ``array`` this rank streams; the shares of the ranks are
    contiguous, in rank order, cover every row and consist of whole disk blocks (a
    view's rows are grouped by the blocks of the file they lie in)."""
    n = len(array)
    if not spread(array, world):
        return 0, n
    if isinstance(array, RowView):
        size = array.base.block
        blocks = np.unique(array.index // size)
        a, b = shard.split(len(blocks), world.size)[world.rank]

        def first(k):
            return n if k >= len(blocks) else int(np.searchsorted(array.index,
                                                                  blocks[k] * size))
        return first(a), first(b)
    a, b = shard.split(-(-n // array.block), world.size)[world.rank]
    return min(a * array.block, n), min(b * array.block, n)


def streamed(array, world, fn):
    """``fn`` over the rows of ``array`` piece by piece, concatenated in row order: each
    rank computes its share and the pieces are gathered (every rank ends with all of
    them). None when ``array`` has no rows."""
    lo, hi = share(array, world)

    def mine():
        return [fn(part) for _, part in chunked(array, lo=lo, hi=hi)]

    parts = [p for ps in startup.gathered(world, mine) for p in ps] \
        if spread(array, world) else mine()
    return np.concatenate(parts) if parts else None


def agree(world, fn):
    """``fn()``; under MPI a failure on any rank is every rank's (before a collective
    that a failing rank would never reach)."""
    return fn() if world is None else startup.together(world, fn)


def read_exactly(split):
    """While training, each rank reads from disk only the rows of a batch it holds."""
    for array in split.arrays():
        if is_lazy(array):
            array.read_exactly()
