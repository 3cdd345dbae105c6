"""Preprocessing steps: ``partial_fit`` learns statistics from the training split (in
pieces, so lazy sources stream), ``__call__(array)`` transforms any split — or one
batch of it — the same way. Learnt state goes to the checkpoint (``get_state``) so
evaluate and predict apply exactly what training did."""

from typing import Literal

import numpy as np

from trainer.errors import DataError
from trainer.config.families import preprocessing

DTYPES = Literal["float32", "float64", "float16", "int64", "int32", "int16", "int8",
                 "uint8", "bool"]


class Step:
    learns = False  # True when the step fits statistics on the training split
    #: True when ``partial()``/``merge()`` combine what several processes learnt from
    #: their pieces (MPI ranks, each reading its share of the training split)
    mergeable = False

    def begin_fit(self):
        """Forget what an earlier fit learnt."""

    def partial_fit(self, array):
        """Learn from one piece of the training split."""

    def partial(self):
        """What ``partial_fit`` learnt so far (plain numbers and arrays)."""
        raise NotImplementedError

    def merge(self, partials):
        """Learn the union of several ``partial()`` results, in the order of the rows
        they came from (then ``end_fit``), as one pass over all those rows would."""
        raise NotImplementedError

    def end_fit(self):
        """All pieces seen."""

    def fit(self, array):
        self.begin_fit()
        self.partial_fit(array)
        self.end_fit()

    def __call__(self, array):
        raise NotImplementedError

    def sample_shape(self, shape):
        """The shape of one sample after this step, from the shape before it (None:
        not known before the data is read). Most steps keep it."""
        return shape

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


@preprocessing.register("reshape")
class Reshape(Step):
    """Each sample to ``target_shape`` (no batch axis; one entry may be -1), as Keras's
    Reshape layer: ``{reshape: [28, 28, 1]}``."""

    def __init__(self, target_shape: list[int]):
        self.target_shape = target_shape

    def __call__(self, array):
        a = np.asarray(array)
        try:
            return a.reshape((len(a), *self.target_shape))
        except ValueError:
            raise DataError(f"reshape: samples of shape {a.shape[1:]} ({int(np.prod(a.shape[1:]))}"
                            f" values) cannot become {tuple(self.target_shape)}") from None

    def sample_shape(self, shape):
        try:
            return np.empty((0, *shape)).reshape((0, *self.target_shape)).shape[1:]
        except ValueError:
            return None  # reported with the data's shape when it is read


@preprocessing.register("cast")
class Cast(Step):
    """To another dtype: ``{cast: float32}``."""

    def __init__(self, dtype: DTYPES):
        self.dtype = dtype

    def __call__(self, array):
        a = np.asarray(array)
        if a.dtype.kind in "USO":
            raise DataError(f"cast: cannot cast text values (e.g. {a.reshape(-1)[:1]}) to "
                            f"{self.dtype}; use class_ids or one_hot for text labels")
        return a.astype(self.dtype)


@preprocessing.register("clip")
class Clip(Step):
    """Values into [min, max] (either may be left out): ``{clip: {min: 0, max: 1}}``."""

    def __init__(self, min: float | None = None, max: float | None = None):  # noqa: A002
        if min is None and max is None:
            from trainer.errors import ConfigError
            raise ConfigError("clip needs min, max or both")
        self.min = min
        self.max = max

    def __call__(self, array):
        return np.clip(array, self.min, self.max)
