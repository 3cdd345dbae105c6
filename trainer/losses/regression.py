"""Regression losses, Keras 2 formulas. Each is a mean over the last axis."""

import numpy as np

from trainer.losses.base import EPSILON, ElementwiseLoss
from trainer.config.families import losses
from trainer.config.registry import NonNegativeFloat

LOG2 = np.log(2.0)


@losses.register("mean_squared_error", "mse", "MSE", "MeanSquaredError")
class MeanSquaredError(ElementwiseLoss):
    """mean((y_pred - y_true)², axis=-1)."""

    def elementwise(self, t, p):
        return (p - t) ** 2

    def elementwise_gradient(self, t, p):
        return 2.0 * (p - t)


@losses.register("mean_absolute_error", "mae", "MAE", "MeanAbsoluteError")
class MeanAbsoluteError(ElementwiseLoss):
    """mean(|y_pred - y_true|, axis=-1). Its gradient at y_pred == y_true is 0."""

    def elementwise(self, t, p):
        return np.abs(p - t)

    def elementwise_gradient(self, t, p):
        return np.sign(p - t)


@losses.register("mean_absolute_percentage_error", "mape", "MAPE",
                 "MeanAbsolutePercentageError")
class MeanAbsolutePercentageError(ElementwiseLoss):
    """100 · mean(|y_true - y_pred| / max(|y_true|, 1e-7), axis=-1)."""

    def elementwise(self, t, p):
        return 100.0 * np.abs(t - p) / np.maximum(np.abs(t), EPSILON)

    def elementwise_gradient(self, t, p):
        return 100.0 * np.sign(p - t) / np.maximum(np.abs(t), EPSILON)


@losses.register("mean_squared_logarithmic_error", "msle", "MSLE",
                 "MeanSquaredLogarithmicError")
class MeanSquaredLogarithmicError(ElementwiseLoss):
    """mean((log(1 + max(y_pred, 1e-7)) - log(1 + max(y_true, 1e-7)))², axis=-1).

    Below the clip (y_pred < 1e-7) the gradient is 0.
    """

    def elementwise(self, t, p):
        return (np.log1p(np.maximum(p, EPSILON)) - np.log1p(np.maximum(t, EPSILON))) ** 2

    def elementwise_gradient(self, t, p):
        q = np.maximum(p, EPSILON)
        diff = np.log1p(q) - np.log1p(np.maximum(t, EPSILON))
        return (p > EPSILON) * 2.0 * diff / (1.0 + q)


@losses.register("logcosh", "log_cosh", "LogCosh")
class LogCosh(ElementwiseLoss):
    """mean(log(cosh(y_pred - y_true)), axis=-1), computed stably as
    x + softplus(-2x) - log 2 (Keras 2). Its gradient is tanh(y_pred - y_true)."""

    def elementwise(self, t, p):
        x = p - t
        return x + np.logaddexp(0.0, -2.0 * x) - LOG2

    def elementwise_gradient(self, t, p):
        return np.tanh(p - t)


@losses.register("huber", "huber_loss", "Huber")
class Huber(ElementwiseLoss):
    """tf.keras's Huber loss: with x = y_pred - y_true, mean over the last axis of
    0.5·x² where |x| ≤ delta, else delta·|x| - 0.5·delta² (quadratic near the target,
    linear beyond, so outliers pull less than with mse). Gradient x, or delta·sign(x).

    Args: delta (1.0): where the loss turns from quadratic to linear.
    """

    def __init__(self, delta: NonNegativeFloat = 1.0):
        self.delta = delta

    def elementwise(self, t, p):
        x = np.abs(p - t)
        return np.where(x <= self.delta, 0.5 * x * x, self.delta * x - 0.5 * self.delta ** 2)

    def elementwise_gradient(self, t, p):
        x = p - t
        return np.clip(x, -self.delta, self.delta)
