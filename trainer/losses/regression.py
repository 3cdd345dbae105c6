"""Regression losses."""

from trainer.losses.base import Loss, last_axis_size, per_sample_mean
from trainer.registries import losses


@losses.register("mean_squared_error", "mse", "MSE", "MeanSquaredError")
class MeanSquaredError(Loss):
    """mean((y_pred - y_true)², axis=-1)."""

    def __call__(self, y_true, y_pred):
        return per_sample_mean((y_pred - y_true) ** 2)

    def gradient(self, y_true, y_pred):
        return 2.0 * (y_pred - y_true) / last_axis_size(y_pred)
