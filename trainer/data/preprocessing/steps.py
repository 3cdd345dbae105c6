"""Preprocessing steps: ``fit(array)`` learns statistics from the training split,
``__call__(array)`` transforms any split the same way."""

import numpy as np

from trainer.errors import DataError
from trainer.registries import preprocessing
from trainer.registry import PositiveInt


class Step:
    def fit(self, array):
        """Learn statistics from the training split (most steps have none)."""

    def __call__(self, array):
        raise NotImplementedError

    def get_state(self):
        return {}

    def set_state(self, state):
        pass


@preprocessing.register("rescale")
class Rescale(Step):
    """x · scale + offset, as float32 (``{rescale: 0.00392}`` divides by 255)."""

    def __init__(self, scale: float, offset: float = 0.0):
        self.scale = scale
        self.offset = offset

    def __call__(self, array):
        return np.asarray(array, np.float32) * np.float32(self.scale) + np.float32(self.offset)


@preprocessing.register("to_categorical")
class ToCategorical(Step):
    """Class ids (N,) or (N, 1) → one-hot (N, num_classes), float32.

    ``num_classes`` defaults to max(id) + 1 of the training split.
    """

    def __init__(self, num_classes: PositiveInt | None = None):
        self.num_classes = num_classes

    def fit(self, array):
        if self.num_classes is None:
            self.num_classes = int(np.max(array)) + 1 if np.size(array) else 1

    def __call__(self, array):
        a = np.asarray(array)
        if a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if a.ndim != 1:
            raise DataError(f"to_categorical expects class ids of shape (N,) or (N, 1), "
                            f"got shape {a.shape}")
        if a.dtype.kind == "f" and not np.all(np.equal(np.mod(a, 1), 0)):
            raise DataError("to_categorical expects whole-number class ids, got fractions")
        ids = a.astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_classes):
            raise DataError(f"to_categorical: class ids must be in [0, {self.num_classes - 1}]"
                            f", got values in [{ids.min()}, {ids.max()}]")
        out = np.zeros((len(ids), self.num_classes), np.float32)
        out[np.arange(len(ids)), ids] = 1
        return out

    def get_state(self):
        return {"num_classes": np.int64(self.num_classes)}

    def set_state(self, state):
        self.num_classes = int(state["num_classes"])
