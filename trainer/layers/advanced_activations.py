"""Activation layers with arguments (or weights): LeakyReLU, PReLU, ELU, ReLU, Softmax."""

import numpy as np

from trainer import activations as act
from trainer import initializers, regularizers
from trainer.engine.layer import Layer
from trainer.config.families import layers
from trainer.config.registry import PositiveInt, component


@layers.register("LeakyReLU")
class LeakyReLU(Layer):
    """x if x > 0 else alpha·x; alpha default 0.3 (Keras 2)."""

    passes_mask = True  # elementwise: a mask_zero mask goes on (Keras 2)

    def __init__(self, alpha: float = 0.3, name: str | None = None):
        super().__init__(name=name)
        self.alpha = alpha

    def forward(self, x, training):
        slope = np.where(x > 0, 1, self.alpha).astype(x.dtype)
        return x * slope, lambda dy: dy * slope


@layers.register("PReLU")
class PReLU(Layer):
    """x if x > 0 else alpha·x, with a learned ``alpha`` per input cell.

    Args: alpha_initializer (zeros), alpha_regularizer, shared_axes (1-based axes
    along which one alpha is shared, e.g. [1, 2] for one alpha per channel of an image).
    Weight: ``alpha`` of the input shape, with 1 on the shared axes.
    """

    passes_mask = True  # elementwise: a mask_zero mask goes on (Keras 2)

    def __init__(self, alpha_initializer: component("initializer") = "zeros",
                 alpha_regularizer: component("regularizer") = None,
                 shared_axes: list[PositiveInt] | None = None, name: str | None = None,
                 trainable: bool = True):
        super().__init__(name=name, trainable=trainable)
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        self.shared_axes = shared_axes

    def build(self, input_shape, rng):
        shape = list(input_shape)
        for a in self.shared_axes or []:
            if not 1 <= a <= len(shape):
                raise self.error(f"shared_axes {self.shared_axes} is out of range for "
                                 f"inputs of shape {tuple(input_shape)}")
            shape[a - 1] = 1
        if any(d is None for d in shape):
            raise self.error(f"needs known sizes on the unshared axes, got input shape "
                             f"{tuple(input_shape)}")
        self.add_weight("alpha", shape, self.alpha_initializer, rng, self.alpha_regularizer)
        self._shared = tuple(a for a in range(1, len(shape) + 1) if shape[a - 1] == 1)
        return input_shape

    def forward(self, x, training):
        alpha = self.params["alpha"]
        neg = np.minimum(x, 0)
        y = np.maximum(x, 0) + alpha * neg

        def backward(dy):
            self.grads["alpha"] += (dy * neg).sum(axis=(0, *self._shared),
                                                  keepdims=True)[0]
            return dy * np.where(x > 0, 1, alpha).astype(dy.dtype)

        return y, backward


@layers.register("ELU")
class ELU(Layer):
    """x if x > 0 else alpha·(exp(x) - 1); alpha default 1."""

    passes_mask = True  # elementwise: a mask_zero mask goes on (Keras 2)

    def __init__(self, alpha: float = 1.0, name: str | None = None):
        super().__init__(name=name)
        self.alpha = alpha
        self._fn = act.get({"elu": {"alpha": alpha}})

    def forward(self, x, training):
        y = self._fn.forward(x)
        return y, lambda dy: self._fn.backward(x, y, dy)


@layers.register("ReLU")
class ReLU(Layer):
    """Keras 2 ReLU: max_value if x ≥ max_value; x if threshold ≤ x < max_value;
    negative_slope·(x - threshold) otherwise. Defaults: no max, slope 0, threshold 0."""

    passes_mask = True  # elementwise: a mask_zero mask goes on (Keras 2)

    def __init__(self, max_value: float | None = None, negative_slope: float = 0.0,
                 threshold: float = 0.0, name: str | None = None):
        super().__init__(name=name)
        if max_value is not None and max_value < 0:
            raise self.error(f"max_value must be non-negative, got {max_value}")
        if negative_slope < 0:
            raise self.error(f"negative_slope must be non-negative, got {negative_slope}")
        self.max_value = max_value
        self.negative_slope = negative_slope
        self.threshold = threshold

    def forward(self, x, training):
        below = x < self.threshold
        y = np.where(below, self.negative_slope * (x - self.threshold), x)
        slope = np.where(below, self.negative_slope, 1.0)
        if self.max_value is not None:
            top = x >= self.max_value
            y = np.where(top, self.max_value, y)
            slope = np.where(top, 0.0, slope)
        slope = slope.astype(x.dtype)
        return y.astype(x.dtype, copy=False), lambda dy: dy * slope


@layers.register("Softmax")
class Softmax(Layer):
    """Softmax over ``axis`` (default -1)."""

    def __init__(self, axis: int = -1, name: str | None = None):
        super().__init__(name=name)
        self.axis = axis
        self._fn = act.get({"softmax": {"axis": axis}})

    def forward(self, x, training):
        y = self._fn.forward(x)
        return y, lambda dy: self._fn.backward(x, y, dy)
