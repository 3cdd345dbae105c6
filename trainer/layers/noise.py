"""Noise layers: SpatialDropout1D, SpatialDropout2D, GaussianNoise, GaussianDropout,
AlphaDropout.

Like Dropout, each draws from ``self.rng``, which the model builder replaces with the
run's noise stream (runs are reproducible and resume exactly), is the identity at
inference, and keeps its input's dtype (float32 draws for float32 data).
"""

import math
from typing import Annotated, Literal

import numpy as np

from trainer.engine.layer import Layer
from trainer.layers._window import check_data_format
from trainer.registries import layers
from trainer.registry import Rate, Schema

NonNegativeFloat = Annotated[float, Schema(minimum=0)]

# SELU's constants (Keras's AlphaDropout)
ALPHA = 1.6732632423543772
SCALE = 1.0507009873554805


def _check_rate(layer, rate):
    if not 0 <= rate < 1:
        raise layer.error(f"rate must be in [0, 1), got {rate}")
    return rate


def _draw_dtype(dtype):
    """float32 draws (24 random bits) for float32 data, float64 otherwise."""
    return np.float32 if dtype == np.float32 else np.float64


def _uniform(rng, shape, dtype):
    return rng.random(shape, dtype=_draw_dtype(dtype))


def _normal(rng, shape, dtype):
    return rng.standard_normal(shape, dtype=_draw_dtype(dtype))


@layers.register("SpatialDropout1D")
class SpatialDropout1D(Layer):
    """Dropout of whole channels: ``y = x * m / (1 - rate)`` while training, with one
    keep mask ``m ~ Bernoulli(1 - rate)`` of shape (batch, 1, channels), so every step
    of a dropped channel is 0; the identity at inference.

    Args:
        rate: fraction of channels to drop, in [0, 1).
    Shapes: ``(batch, steps, channels)`` → the same.
    """

    passes_mask = True  # Keras's SpatialDropout supports masking, as Dropout
    rank = 1  # spatial axes between batch and channels

    def __init__(self, rate: Rate, name: str | None = None):
        super().__init__(name=name)
        self.rate = _check_rate(self, rate)
        self.rng = np.random.default_rng(0)  # replaced by the model's noise stream

    def build(self, input_shape, rng):
        if len(input_shape) != self.rank + 1:
            raise self.error(f"expects inputs of rank {self.rank + 2} (batch, {self.rank} "
                             f"spatial axes, channels), got an input of shape "
                             f"{(None, *input_shape)}")
        return input_shape

    def forward(self, x, training):
        if not training or self.rate == 0:
            return x, lambda dy: dy
        shape = (x.shape[0],) + (1,) * self.rank + (x.shape[-1],)
        keep = 1.0 - self.rate
        mask = (_uniform(self.rng, shape, x.dtype) < keep).astype(x.dtype)
        mask *= x.dtype.type(1.0 / keep)
        return x * mask, lambda dy: dy * mask


@layers.register("SpatialDropout2D")
class SpatialDropout2D(SpatialDropout1D):
    """Dropout of whole feature maps: ``y = x * m / (1 - rate)`` while training, with
    one keep mask ``m ~ Bernoulli(1 - rate)`` of shape (batch, 1, 1, channels); the
    identity at inference.

    Args:
        rate: fraction of channels to drop, in [0, 1).
        data_format: channels_last (the default); channels_first is not supported.
    Shapes: ``(batch, rows, cols, channels)`` → the same.
    """

    rank = 2

    def __init__(self, rate: Rate, data_format: Literal["channels_last"] | None = None,
                 name: str | None = None):
        super().__init__(rate, name=name)
        check_data_format(data_format, self)
        self.data_format = data_format


@layers.register("GaussianNoise")
class GaussianNoise(Layer):
    """Additive noise: ``y = x + n``, ``n ~ N(0, stddev²)`` while training; the identity
    at inference.

    Args:
        stddev: standard deviation of the noise (≥ 0).
        seed: ignored; the run's seed drives every random stream.
    """

    passes_mask = True  # elementwise over time steps: a mask_zero mask goes on

    def __init__(self, stddev: NonNegativeFloat, seed: int | None = None,
                 name: str | None = None):
        super().__init__(name=name)
        if not stddev >= 0:
            raise self.error(f"stddev must be 0 or more, got {stddev}")
        self.stddev = stddev
        self.seed = seed
        self.rng = np.random.default_rng(0)  # replaced by the model's noise stream

    def forward(self, x, training):
        if not training:
            return x, lambda dy: dy
        noise = _normal(self.rng, x.shape, x.dtype).astype(x.dtype, copy=False)
        noise *= x.dtype.type(self.stddev)
        return x + noise, lambda dy: dy


@layers.register("GaussianDropout")
class GaussianDropout(Layer):
    """Multiplicative noise: ``y = x * n``, ``n ~ N(1, rate / (1 - rate))`` (standard
    deviation ``sqrt(rate / (1 - rate))``) while training; the identity at inference.

    Args:
        rate: drop probability of the matching Dropout, in [0, 1).
        seed: ignored; the run's seed drives every random stream.
    """

    passes_mask = True  # elementwise over time steps: a mask_zero mask goes on

    def __init__(self, rate: Rate, seed: int | None = None, name: str | None = None):
        super().__init__(name=name)
        self.rate = _check_rate(self, rate)
        self.seed = seed
        self.rng = np.random.default_rng(0)  # replaced by the model's noise stream

    def forward(self, x, training):
        if not training or self.rate == 0:
            return x, lambda dy: dy
        noise = _normal(self.rng, x.shape, x.dtype).astype(x.dtype, copy=False)
        noise *= x.dtype.type(math.sqrt(self.rate / (1.0 - self.rate)))
        noise += x.dtype.type(1)
        return x * noise, lambda dy: dy * noise


@layers.register("AlphaDropout")
class AlphaDropout(Layer):
    """Dropout for SELU networks that keeps the mean and variance of its input: dropped
    inputs are set to SELU's saturation value ``alpha' = -alpha * scale`` and the result
    is moved back by an affine map. While training, with a keep mask
    ``m ~ Bernoulli(1 - rate)``::

        y = a * (x * m + alpha' * (1 - m)) + b
        a = ((1 - rate) * (1 + rate * alpha'²)) ** -0.5,  b = -a * alpha' * rate

    (alpha = 1.6732632423543772, scale = 1.0507009873554805, as Keras); the identity
    at inference.

    Args:
        rate: fraction to drop, in [0, 1).
        noise_shape: optional shape of the mask (1 where it is broadcast); as for
            Dropout, the first (batch) entry is ignored: one mask per sample.
        seed: ignored; the run's seed drives every random stream.
    """

    passes_mask = True  # elementwise over time steps: a mask_zero mask goes on

    def __init__(self, rate: Rate, noise_shape: list[int | None] | None = None,
                 seed: int | None = None, name: str | None = None):
        super().__init__(name=name)
        self.rate = _check_rate(self, rate)
        self.noise_shape = noise_shape
        self.seed = seed
        self.rng = np.random.default_rng(0)  # replaced by the model's noise stream

    def build(self, input_shape, rng):
        ns = self.noise_shape
        if ns is not None and (len(ns) != len(input_shape) + 1 or any(
                d not in (None, 1, n) for d, n in zip(ns[1:], input_shape))):
            raise self.error(f"noise_shape {ns} does not fit the input shape "
                             f"{(None, *input_shape)}: give one entry per axis, each "
                             f"null, 1 or the input's size")
        return input_shape

    def forward(self, x, training):
        if not training or self.rate == 0:
            return x, lambda dy: dy
        shape = x.shape
        if self.noise_shape is not None:
            shape = (x.shape[0],) + tuple(
                x.shape[i + 1] if d is None else d for i, d in enumerate(self.noise_shape[1:]))
        rate = self.rate
        alpha_p = -ALPHA * SCALE
        a = ((1 - rate) * (1 + rate * alpha_p ** 2)) ** -0.5
        b = -a * alpha_p * rate
        keep = _uniform(self.rng, shape, x.dtype) >= rate
        gain = np.where(keep, a, 0).astype(x.dtype)  # a * m
        shift = np.where(keep, b, a * alpha_p + b).astype(x.dtype)  # a * alpha' * (1-m) + b
        return x * gain + shift, lambda dy: dy * gain
