"""cosine_similarity as a metric (positive, as Keras's CosineSimilarity metric), and
root_mean_squared_error (the root of the epoch's mean, not a mean of roots)."""

import numpy as np

from trainer.metrics.base import MeanMetric
from trainer.config.families import losses, metrics


@metrics.register("cosine_similarity", "CosineSimilarity")
class CosineSimilarity(MeanMetric):
    """mean(sum(l2_normalize(y_true) · l2_normalize(y_pred), axis=-1)): 1 for aligned
    vectors. (The loss ``cosine_proximity`` is its negative.)"""

    def __init__(self):
        self._loss = losses.get("cosine_proximity")
        super().__init__()

    def values(self, y_true, y_pred):
        return -self._loss(y_true, np.asarray(y_pred, np.float64))


@metrics.register("root_mean_squared_error", "RootMeanSquaredError", "rmse")
class RootMeanSquaredError(MeanMetric):
    """tf.keras's RootMeanSquaredError: sqrt of the (weighted) mean of (y_pred - y_true)²
    over every element of the epoch — the root is taken once, of the epoch's mean."""

    def values(self, y_true, y_pred):
        d = np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64).reshape(
            np.shape(y_pred))
        return (d * d).reshape(len(d), -1).mean(axis=1)

    def result(self):
        return float(np.sqrt(super().result()))
