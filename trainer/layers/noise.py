"""Noise layers: SpatialDropout1D/2D/3D, GaussianNoise, GaussianDropout, AlphaDropout.

Like Dropout, each draws from ``self.rng``, which the model builder replaces with the
run's noise stream (runs are reproducible and resume exactly), is the identity at
inference, and keeps its input's dtype (float32 draws for float32 data).
"""

import math
from typing import Annotated, Literal

import numpy as np

from trainer.distributed import shard
from trainer.engine.layer import Layer
from trainer.layers._window import SPATIAL, check_data_format
from trainer.layers.core import Dropout, check_rate, draw_dtype, mask_shape
from trainer.config.families import layers
from trainer.config.registry import Rate, Schema

NonNegativeFloat = Annotated[float, Schema(minimum=0)]

# SELU's constants (Keras's AlphaDropout)
ALPHA = 1.6732632423543772
SCALE = 1.0507009873554805


def _normal(rng, shape, dtype):
    return rng.standard_normal(shape, dtype=draw_dtype(dtype))


@layers.register("SpatialDropout1D")
class SpatialDropout1D(Dropout):
    """Dropout of whole channels: ``y = x * m / (1 - rate)`` while training, with one
    keep mask ``m ~ Bernoulli(1 - rate)`` of shape (batch, 1, channels), so every step
    of a dropped channel is 0; the identity at inference. It is Dropout with that
    noise_shape.

    Args:
        rate: fraction of channels to drop, in [0, 1).
    Shapes: ``(batch, steps, channels)`` → the same.
    """

    rank = 1  # spatial axes between batch and channels

    def __init__(self, rate: Rate, name: str | None = None):
        super().__init__(rate, noise_shape=[None, *[1] * self.rank, None], name=name)

    def build(self, input_shape, rng):
        self.expect_rank(input_shape, SPATIAL[self.rank] + ("channels",))
        return super().build(input_shape, rng)


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


@layers.register("SpatialDropout3D")
class SpatialDropout3D(SpatialDropout2D):
    """Dropout of whole feature volumes: one keep mask of shape (batch, 1, 1, 1,
    channels) while training; the identity at inference. Args as SpatialDropout2D.
    Shapes: ``(batch, depth, rows, cols, channels)`` → the same."""

    rank = 3


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
        noise = shard.draw(lambda s: _normal(self.rng, s, x.dtype), x.shape).astype(x.dtype, copy=False)
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
        self.rate = check_rate(self, rate)
        self.seed = seed
        self.rng = np.random.default_rng(0)  # replaced by the model's noise stream

    def forward(self, x, training):
        if not training or self.rate == 0:
            return x, lambda dy: dy
        noise = shard.draw(lambda s: _normal(self.rng, s, x.dtype), x.shape).astype(x.dtype, copy=False)
        noise *= x.dtype.type(math.sqrt(self.rate / (1.0 - self.rate)))
        noise += x.dtype.type(1)
        return x * noise, lambda dy: dy * noise


@layers.register("AlphaDropout")
class AlphaDropout(Dropout):
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
    Arguments, noise_shape checks and masks as Dropout; only the training-time map differs.
    """

    def forward(self, x, training):
        if not training or self.rate == 0:
            return x, lambda dy: dy
        shape = mask_shape(x.shape, self.noise_shape)
        rate = self.rate
        alpha_p = -ALPHA * SCALE
        a = ((1 - rate) * (1 + rate * alpha_p ** 2)) ** -0.5
        b = -a * alpha_p * rate
        keep = shard.draw(lambda s: self.rng.random(s, dtype=draw_dtype(x.dtype)), shape) >= rate
        gain = np.where(keep, a, 0).astype(x.dtype)  # a * m
        shift = np.where(keep, b, a * alpha_p + b).astype(x.dtype)  # a * alpha' * (1-m) + b
        return x * gain + shift, lambda dy: dy * gain
