"""The elementwise activations of Keras 2, forward and backward side by side."""

import numpy as np

from trainer.config.families import activations


class Activation:
    """Base: ``forward(x) -> y`` and ``backward(x, y, dy) -> dx``."""

    def forward(self, x):
        raise NotImplementedError

    def backward(self, x, y, dy):
        raise NotImplementedError


@activations.register("linear")
class Linear(Activation):
    def forward(self, x):
        return x

    def backward(self, x, y, dy):
        return dy


@activations.register("relu")
class Relu(Activation):
    """max(x, 0)."""

    def forward(self, x):
        return np.maximum(x, 0)

    def backward(self, x, y, dy):
        return dy * (x > 0)


@activations.register("sigmoid")
class Sigmoid(Activation):
    """1 / (1 + exp(-x)), computed without overflow."""

    def forward(self, x):
        out = np.empty_like(x)
        pos = x >= 0
        out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
        ex = np.exp(x[~pos])
        out[~pos] = ex / (1.0 + ex)
        return out

    def backward(self, x, y, dy):
        return dy * y * (1 - y)


@activations.register("tanh")
class Tanh(Activation):
    def forward(self, x):
        return np.tanh(x)

    def backward(self, x, y, dy):
        return dy * (1 - y * y)


@activations.register("softmax")
class Softmax(Activation):
    """exp(x - max) / sum(exp(x - max)) over ``axis`` (default the last)."""

    def __init__(self, axis: int = -1):
        self.axis = axis

    def forward(self, x):
        e = np.exp(x - x.max(axis=self.axis, keepdims=True))
        return e / e.sum(axis=self.axis, keepdims=True)

    def backward(self, x, y, dy):
        return y * (dy - (dy * y).sum(axis=self.axis, keepdims=True))
