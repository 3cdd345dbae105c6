"""Which rows of the training data ``validation: {split: F, mode: M}`` takes."""

import math

import numpy as np

from trainer.data.ranks import streamed
from trainer.data.split import class_ids
from trainer.errors import DataError


def validation_rows(train, fraction, mode, seed, world=None):
    """Rows of the training source that ``validation: {split: F, mode: M}`` takes.

    ``tail`` (Keras's validation_split): the last rows, before any shuffling.
    ``random``: a random choice, from the run's seed. ``stratified``: from each class
    of the first output the same fraction (rounded), at random from the run's seed;
    under MPI (``world``) each rank reads the labels of its share of a lazy file.
    """
    n = len(train)
    n_val = n - int(math.floor(n * (1.0 - fraction)))  # Keras: split_at = floor(n·(1 − f))
    if n_val < 1 or n_val >= n:
        raise DataError(f"data.validation.split {fraction} of {n} rows leaves an empty split")
    if mode == "tail":
        return np.arange(n - n_val, n)
    rng = np.random.default_rng([seed, 0x5A11D])
    if mode == "random":
        return np.sort(rng.permutation(n)[:n_val])
    if not train.y:
        raise DataError("data.validation mode 'stratified' needs labels (data.train.y)")
    y = next(iter(train.y.values()))
    ids = streamed(y, world, class_ids)
    ids = np.zeros(0, np.int64) if ids is None else ids
    rows = []
    for c in np.unique(ids):
        members = np.flatnonzero(ids == c)
        k = int(round(len(members) * fraction))
        rows.append(rng.permutation(members)[:k])
    rows = np.sort(np.concatenate(rows))
    if len(rows) < 1 or len(rows) >= n:
        raise DataError(f"data.validation.split {fraction} of {n} rows leaves an empty split")
    return rows
