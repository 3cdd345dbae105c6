"""Layers on sequences (batch, steps, features): ZeroPadding1D, Cropping1D, UpSampling1D,
Masking; and ThresholdedReLU (elementwise).

Masks (Keras 2): Masking makes one, ``any(x != mask_value, axis=-1)``, whatever mask
came in. ZeroPadding1D, Cropping1D and UpSampling1D change the time axis, so a mask
stops there (as tf.keras 2, which drops it at layers without masking support);
ThresholdedReLU is elementwise and hands it on unchanged.
"""

from typing import Annotated

import numpy as np

from trainer.engine.layer import Layer
from trainer.errors import DataError
from trainer.config.families import layers
from trainer.config.registry import NonNegativeInt, PositiveInt, Schema

Pair = NonNegativeInt | Annotated[list[NonNegativeInt], Schema(minItems=2, maxItems=2)]


def _pair(value, layer, what):
    """1 → (1, 1); [1, 2] → (1, 2): steps at the start and at the end."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    ok = (isinstance(value, (list, tuple)) and len(value) == 2 and
          all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value))
    if not ok:
        raise layer.error(f"{what} must be an int or [left, right] of non-negative ints, "
                          f"got {value!r}")
    return tuple(value)


def _check_sequence(layer, input_shape):
    layer.expect_rank(input_shape, ("steps", "features"))


@layers.register("ZeroPadding1D")
class ZeroPadding1D(Layer):
    """Adds steps of zeros at the start and end of the time axis:
    ``(N, steps, f) → (N, left + steps + right, f)``. padding: int (both ends) or
    [left, right]; default 1. The gradient is that of the original steps."""

    def __init__(self, padding: Pair = 1, name: str | None = None):
        super().__init__(name=name)
        self.padding = _pair(padding, self, "padding")

    def build(self, input_shape, rng):
        _check_sequence(self, input_shape)
        left, right = self.padding
        steps, features = input_shape
        return (None if steps is None else left + steps + right, features)

    def forward(self, x, training):
        left, right = self.padding
        y = np.pad(x, ((0, 0), (left, right), (0, 0)))
        steps = x.shape[1]
        return y, lambda dy: dy[:, left:left + steps]


@layers.register("Cropping1D")
class Cropping1D(Layer):
    """Removes steps at the start and end of the time axis:
    ``(N, steps, f) → (N, steps - left - right, f)``; ``y = x[:, left:steps - right]``.
    cropping: int (both ends) or [left, right]; default [1, 1]. Cropping that leaves no
    step is refused. The gradient is zero on the removed steps."""

    def __init__(self, cropping: Pair = (1, 1), name: str | None = None):
        super().__init__(name=name)
        self.cropping = _pair(cropping, self, "cropping")

    def _leaves_nothing(self, steps):
        left, right = self.cropping
        return (f"cropping {left}+{right} steps leaves nothing of an input of {steps} "
                f"steps; crop fewer than {steps} steps in all")

    def build(self, input_shape, rng):
        _check_sequence(self, input_shape)
        left, right = self.cropping
        steps, features = input_shape
        if steps is not None and left + right >= steps:
            raise self.error(self._leaves_nothing(steps))
        return (None if steps is None else steps - left - right, features)

    def forward(self, x, training):
        left, right = self.cropping
        steps = x.shape[1]
        if left + right >= steps:  # only when the model's steps are not fixed
            raise DataError(f"layer '{self.name}' (Cropping1D): "
                            f"{self._leaves_nothing(steps)}")
        y = x[:, left:steps - right]

        def backward(dy):
            dx = np.zeros(x.shape, dtype=dy.dtype)
            dx[:, left:steps - right] = dy
            return dx

        return y, backward


@layers.register("UpSampling1D")
class UpSampling1D(Layer):
    """Repeats every step ``size`` times along the time axis (default 2):
    ``(N, steps, f) → (N, steps·size, f)``, ``y[:, t] = x[:, t // size]``. The gradient
    of a step is the sum of the gradients of its repeats."""

    def __init__(self, size: PositiveInt = 2, name: str | None = None):
        super().__init__(name=name)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise self.error(f"size must be a positive int, got {size!r}")
        self.size = size

    def build(self, input_shape, rng):
        _check_sequence(self, input_shape)
        steps, features = input_shape
        return (None if steps is None else steps * self.size, features)

    def forward(self, x, training):
        n, steps, features = x.shape
        y = np.repeat(x, self.size, axis=1)
        return y, lambda dy: dy.reshape(n, steps, self.size, features).sum(axis=2)


@layers.register("Masking")
class Masking(Layer):
    """Masks the steps whose features all equal ``mask_value`` (default 0):
    ``keep = any(x != mask_value, axis=-1)`` per (sample, step); ``y = x · keep`` (a
    masked step becomes 0), ``dx = dy · keep``. The mask of its output is ``keep``
    (whatever mask came in), so recurrent layers after it skip those steps, as an
    Embedding's ``mask_zero`` makes them. Input ``(batch, steps, features)``."""

    def __init__(self, mask_value: float = 0.0, name: str | None = None):
        super().__init__(name=name)
        self.mask_value = mask_value

    def build(self, input_shape, rng):
        _check_sequence(self, input_shape)
        return input_shape

    def keep(self, x):
        return np.any(x != self.mask_value, axis=-1)

    def forward(self, x, training):
        weight = self.keep(x)[..., None].astype(x.dtype)
        return x * weight, lambda dy: dy * weight

    def compute_mask(self, x, mask):
        return self.keep(x)


@layers.register("ThresholdedReLU")
class ThresholdedReLU(Layer):
    """x if x > theta else 0; theta ≥ 0, default 1 (Keras 2). The gradient is 1 where
    x > theta, else 0. A mask passes through unchanged."""

    passes_mask = True  # elementwise

    def __init__(self, theta: Annotated[float, Schema(minimum=0)] = 1.0,
                 name: str | None = None):
        super().__init__(name=name)
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not theta >= 0:
            raise self.error(f"theta must be a number >= 0, got {theta!r}")
        self.theta = theta

    def forward(self, x, training):
        weight = (x > self.theta).astype(x.dtype)
        return x * weight, lambda dy: dy * weight
