"""More Keras 2 initializers: truncated_normal, variance_scaling, orthogonal, identity."""

from typing import Literal

import numpy as np

from trainer.errors import ConfigError
from trainer.initializers.basic import (Initializer, VarianceScaling, check_spread,
                                        truncated_normal)
from trainer.config.families import initializers


@initializers.register("truncated_normal", "TruncatedNormal")
class TruncatedNormal(Initializer):
    """Normal(mean, stddev) with values beyond two stddevs redrawn; stddev default 0.05."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05):
        check_spread("truncated_normal", mean, stddev)
        self.mean = mean
        self.stddev = stddev

    def __call__(self, shape, rng, dtype):
        return truncated_normal(rng, self.mean, self.stddev, shape).astype(dtype)


@initializers.register("variance_scaling", "VarianceScaling")
class VarianceScalingInit(VarianceScaling):
    """Keras VarianceScaling: variance scale / fan (fan_in, fan_out or fan_avg), drawn
    from a truncated normal (default), an untruncated normal, or a uniform."""

    def __init__(self, scale: float = 1.0,
                 mode: Literal["fan_in", "fan_out", "fan_avg"] = "fan_in",
                 distribution: Literal["truncated_normal", "untruncated_normal", "normal",
                                       "uniform"] = "truncated_normal"):
        if not scale > 0:
            raise ConfigError(f"variance_scaling: scale must be positive, got {scale}")
        self.scale = scale
        self.mode = mode
        self.distribution = distribution

    def __call__(self, shape, rng, dtype):
        if self.distribution != "untruncated_normal":
            return super().__call__(shape, rng, dtype)
        from trainer.initializers import fans
        fan_in, fan_out = fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        return rng.normal(0.0, np.sqrt(self.scale / max(1.0, fan)), shape).astype(dtype)


@initializers.register("orthogonal", "Orthogonal")
class Orthogonal(Initializer):
    """A random orthogonal matrix (QR of a normal one, signs fixed) times ``gain``,
    reshaped: rows are all axes but the last, columns the last."""

    def __init__(self, gain: float = 1.0):
        self.gain = gain

    def __call__(self, shape, rng, dtype):
        if len(shape) < 2:
            raise ConfigError(f"orthogonal needs a weight of rank 2 or more, got shape {shape}")
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        a = rng.normal(0.0, 1.0, (max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q[:rows, :cols]).reshape(shape).astype(dtype)


@initializers.register("identity", "Identity")
class Identity(Initializer):
    """``gain`` times the identity matrix (2-D weights only)."""

    def __init__(self, gain: float = 1.0):
        self.gain = gain

    def __call__(self, shape, rng, dtype):
        if len(shape) != 2:
            raise ConfigError(f"identity needs a 2-D weight, got shape {shape}")
        return (self.gain * np.eye(*shape)).astype(dtype)
