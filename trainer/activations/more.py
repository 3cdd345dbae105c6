"""The other named activations of Keras 2: elu, selu, softplus, softsign, hard_sigmoid,
exponential, swish/silu, gelu. Forward and backward side by side."""

import math

import numpy as np

from trainer.activations.basic import Activation, Sigmoid
from trainer.config.families import activations

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


@activations.register("elu")
class Elu(Activation):
    """x if x > 0 else alpha·(exp(x) - 1); alpha default 1."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def forward(self, x):
        return np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0)))

    def backward(self, x, y, dy):
        return dy * np.where(x > 0, 1, self.alpha * np.exp(np.minimum(x, 0)))


@activations.register("selu")
class Selu(Activation):
    """scale·elu(x, alpha) with the self-normalising constants of Klambauer et al."""

    def forward(self, x):
        return SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0)))

    def backward(self, x, y, dy):
        return dy * SELU_SCALE * np.where(x > 0, 1, SELU_ALPHA * np.exp(np.minimum(x, 0)))


@activations.register("softplus")
class Softplus(Activation):
    """log(1 + exp(x)), computed without overflow."""

    def forward(self, x):
        return np.logaddexp(0, x).astype(x.dtype, copy=False)

    def backward(self, x, y, dy):
        return dy * Sigmoid().forward(x)


@activations.register("softsign")
class Softsign(Activation):
    """x / (1 + |x|)."""

    def forward(self, x):
        return x / (1 + np.abs(x))

    def backward(self, x, y, dy):
        return dy / (1 + np.abs(x)) ** 2


@activations.register("hard_sigmoid")
class HardSigmoid(Activation):
    """Keras 2's piecewise-linear sigmoid: clip(0.2·x + 0.5, 0, 1)."""

    def forward(self, x):
        return np.clip(0.2 * x + 0.5, 0, 1).astype(x.dtype, copy=False)

    def backward(self, x, y, dy):
        return dy * np.where(np.abs(x) < 2.5, 0.2, 0).astype(dy.dtype)


@activations.register("exponential")
class Exponential(Activation):
    """exp(x)."""

    def forward(self, x):
        return np.exp(x)

    def backward(self, x, y, dy):
        return dy * y


@activations.register("swish", "silu")
class Swish(Activation):
    """x·sigmoid(x)."""

    def forward(self, x):
        return x * Sigmoid().forward(x)

    def backward(self, x, y, dy):
        s = Sigmoid().forward(x)
        return dy * (s + x * s * (1 - s))


@activations.register("gelu")
class Gelu(Activation):
    """0.5·x·(1 + erf(x/√2)), or with ``approximate: true`` the tanh form
    0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), as Keras."""

    C = float(np.sqrt(2 / np.pi))

    def __init__(self, approximate: bool = False):
        self.approximate = approximate

    def forward(self, x):
        if self.approximate:
            return 0.5 * x * (1 + np.tanh(self.C * (x + 0.044715 * x ** 3)))
        from trainer.engine.kernels.special import erf
        return 0.5 * x * (1 + erf(x / np.sqrt(2).astype(x.dtype)))

    def backward(self, x, y, dy):
        if self.approximate:
            t = np.tanh(self.C * (x + 0.044715 * x ** 3))
            dt = (1 - t * t) * self.C * (1 + 3 * 0.044715 * x * x)
            return dy * (0.5 * (1 + t) + 0.5 * x * dt)
        from trainer.engine.kernels.special import erf
        cdf = 0.5 * (1 + erf(x / np.sqrt(2).astype(x.dtype)))
        pdf = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        return dy * (cdf + x * pdf)
