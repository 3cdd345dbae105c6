"""Initializers: ``init(shape, rng, dtype) -> array``, Keras 2 formulas."""

import math

import numpy as np

from trainer.errors import ConfigError
from trainer.initializers import fans
from trainer.config.families import initializers


def check_spread(name, mean, stddev):
    """A normal's arguments: finite, stddev not negative (else NumPy fails mid-build)."""
    if not (math.isfinite(mean) and math.isfinite(stddev)) or stddev < 0:
        raise ConfigError(f"{name}: expected a finite mean and a finite stddev ≥ 0, got "
                          f"mean={mean}, stddev={stddev}")


class Initializer:
    def __call__(self, shape, rng, dtype):
        raise NotImplementedError


@initializers.register("zeros", "Zeros")
class Zeros(Initializer):
    def __call__(self, shape, rng, dtype):
        return np.zeros(shape, dtype)


@initializers.register("ones", "Ones")
class Ones(Initializer):
    def __call__(self, shape, rng, dtype):
        return np.ones(shape, dtype)


@initializers.register("constant", "Constant")
class Constant(Initializer):
    def __init__(self, value: float = 0.0):
        self.value = value

    def __call__(self, shape, rng, dtype):
        return np.full(shape, self.value, dtype)


@initializers.register("random_normal", "RandomNormal")
class RandomNormal(Initializer):
    def __init__(self, mean: float = 0.0, stddev: float = 0.05):
        check_spread("random_normal", mean, stddev)
        self.mean = mean
        self.stddev = stddev

    def __call__(self, shape, rng, dtype):
        return rng.normal(self.mean, self.stddev, shape).astype(dtype)


@initializers.register("random_uniform", "RandomUniform")
class RandomUniform(Initializer):
    def __init__(self, minval: float = -0.05, maxval: float = 0.05):
        if not (math.isfinite(minval) and math.isfinite(maxval)) or minval > maxval:
            raise ConfigError(f"random_uniform: expected finite minval ≤ maxval, got "
                              f"minval={minval}, maxval={maxval}")
        self.minval = minval
        self.maxval = maxval

    def __call__(self, shape, rng, dtype):
        return rng.uniform(self.minval, self.maxval, shape).astype(dtype)


class VarianceScaling(Initializer):
    """Keras VarianceScaling: scale / fan, normal (truncated) or uniform."""

    scale = 1.0
    mode = "fan_in"
    distribution = "truncated_normal"

    def __call__(self, shape, rng, dtype):
        fan_in, fan_out = fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        var = self.scale / max(1.0, fan)
        if self.distribution == "uniform":
            limit = np.sqrt(3.0 * var)
            return rng.uniform(-limit, limit, shape).astype(dtype)
        # truncated normal at two stddevs; 0.8796... is the stddev of that truncation
        std = np.sqrt(var) / 0.87962566103423978
        return truncated_normal(rng, 0.0, std, shape).astype(dtype)


def truncated_normal(rng, mean, std, shape):
    out = rng.normal(0.0, 1.0, shape)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.normal(0.0, 1.0, int(bad.sum()))
        bad = np.abs(out) > 2
    return mean + std * out


@initializers.register("glorot_uniform", "GlorotUniform")
class GlorotUniform(VarianceScaling):
    mode, distribution = "fan_avg", "uniform"


@initializers.register("glorot_normal", "GlorotNormal")
class GlorotNormal(VarianceScaling):
    mode = "fan_avg"


@initializers.register("he_uniform", "HeUniform")
class HeUniform(VarianceScaling):
    scale, distribution = 2.0, "uniform"


@initializers.register("he_normal", "HeNormal")
class HeNormal(VarianceScaling):
    scale = 2.0


@initializers.register("lecun_uniform", "LecunUniform")
class LecunUniform(VarianceScaling):
    distribution = "uniform"


@initializers.register("lecun_normal", "LecunNormal")
class LecunNormal(VarianceScaling):
    pass
