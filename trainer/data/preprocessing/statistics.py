"""Steps whose statistics come from the training split only: standardize, normalize.

``per`` chooses what shares a statistic: ``feature`` — each value position of a sample
(statistics over the rows; a column of a table, a pixel of an image), ``channel`` —
each entry of the last axis (over rows and every other axis; Keras's Normalization
layer with axis=-1), ``global`` — one number for everything.
"""

from typing import Literal

import numpy as np

from trainer.data.preprocessing.steps import Step
from trainer.errors import DataError
from trainer.config.families import preprocessing

Per = Literal["feature", "channel", "global"]


def _axes(per, ndim):
    if per == "feature":
        return (0,)
    if per == "channel":
        return tuple(range(ndim - 1)) if ndim > 1 else (0,)
    return tuple(range(ndim))


def _numbers(array, step):
    a = np.asarray(array)
    if a.dtype.kind not in "biuf":
        raise DataError(f"{step}: needs numbers, got {a.dtype} values "
                        f"(e.g. {a.reshape(-1)[:1]})")
    return a


class _Stats(Step):
    learns = True
    mergeable = True

    def _stat_shape(self, a):
        axes = _axes(self.per, a.ndim)
        return tuple(1 if i in axes else n for i, n in enumerate(a.shape))[1:]

    def _check_fitted(self, name):
        if self.count == 0:
            raise DataError(f"{name}: the training split has no rows to learn statistics from")


@preprocessing.register("standardize")
class Standardize(_Stats):
    """(x − mean) / std with mean and std of the training split (float32). A constant
    feature (std 0) keeps scale 1, as scikit-learn's StandardScaler does."""

    def __init__(self, per: Per = "feature"):
        self.per = per
        self.begin_fit()

    def begin_fit(self):
        self.count, self.mean, self.m2 = 0, None, None
        self.std = None

    def partial_fit(self, array):
        a = _numbers(array, "standardize").astype(np.float64)
        axes = _axes(self.per, a.ndim)
        n = int(np.prod([a.shape[i] for i in axes]))
        if n == 0:
            return
        mean = a.mean(axis=axes, keepdims=True)[0]
        m2 = ((a - mean) ** 2).sum(axis=axes, keepdims=True)[0]
        self._add(n, mean, m2)

    def _add(self, n, mean, m2):
        if self.count == 0:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n  # Chan et al.'s pairwise update: stable in one pass
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta ** 2 * (self.count * n / total)
        self.count = total

    def partial(self):
        return self.count, self.mean, self.m2

    def merge(self, partials):
        self.begin_fit()
        for n, mean, m2 in partials:
            if n:
                self._add(n, mean, m2)

    def end_fit(self):
        self._check_fitted("standardize")
        std = np.sqrt(self.m2 / self.count)
        self.std = np.where(std > 0, std, 1.0)

    def __call__(self, array):
        a = np.asarray(_numbers(array, "standardize"), np.float32)
        return (a - self.mean.astype(np.float32)) / self.std.astype(np.float32)

    def get_state(self):
        return {"mean": self.mean, "std": self.std}

    def set_state(self, state):
        self.mean, self.std = np.asarray(state["mean"]), np.asarray(state["std"])
        self.count = 1


@preprocessing.register("normalize")
class Normalize(_Stats):
    """Min–max scaling into [low, high] with min and max of the training split
    (float32). Values outside the training range map outside [low, high]; add a clip
    step after it to bound them. A constant feature maps to ``low``."""

    def __init__(self, low: float = 0.0, high: float = 1.0, per: Per = "feature"):
        self.low = low
        self.high = high
        self.per = per
        self.begin_fit()

    def begin_fit(self):
        self.count, self.min, self.max = 0, None, None

    def partial_fit(self, array):
        a = _numbers(array, "normalize").astype(np.float64)
        if a.size == 0:
            return
        axes = _axes(self.per, a.ndim)
        lo, hi = a.min(axis=axes, keepdims=True)[0], a.max(axis=axes, keepdims=True)[0]
        self._add(len(a), lo, hi)

    def _add(self, n, lo, hi):
        self.min = lo if self.min is None else np.minimum(self.min, lo)
        self.max = hi if self.max is None else np.maximum(self.max, hi)
        self.count += n

    def partial(self):
        return self.count, self.min, self.max

    def merge(self, partials):
        self.begin_fit()
        for n, lo, hi in partials:
            if n:
                self._add(n, lo, hi)

    def end_fit(self):
        self._check_fitted("normalize")

    def __call__(self, array):
        a = np.asarray(_numbers(array, "normalize"), np.float32)
        span = self.max - self.min
        scale = np.where(span > 0, (self.high - self.low) / np.where(span > 0, span, 1), 0.0)
        return ((a - self.min.astype(np.float32)) * scale.astype(np.float32)
                + np.float32(self.low))

    def get_state(self):
        return {"min": self.min, "max": self.max}

    def set_state(self, state):
        self.min, self.max = np.asarray(state["min"]), np.asarray(state["max"])
        self.count = 1
