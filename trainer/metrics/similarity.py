"""cosine_similarity as a metric (positive, as Keras's CosineSimilarity metric)."""

import numpy as np

from trainer.metrics.base import MeanMetric
from trainer.registries import losses, metrics


@metrics.register("cosine_similarity", "CosineSimilarity")
class CosineSimilarity(MeanMetric):
    """mean(sum(l2_normalize(y_true) · l2_normalize(y_pred), axis=-1)): 1 for aligned
    vectors. (The loss ``cosine_proximity`` is its negative.)"""

    def __init__(self):
        self._loss = losses.get("cosine_proximity")
        super().__init__()

    def values(self, y_true, y_pred):
        return -self._loss(y_true, np.asarray(y_pred, np.float64))
