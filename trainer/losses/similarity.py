"""cosine_proximity, Keras 2 formula."""

import numpy as np

from trainer.losses.base import RowLoss
from trainer.config.families import losses

TINY = 1e-12  # l2_normalize's floor on the squared norm


def l2_normalize(x):
    """x / sqrt(max(sum(x²), 1e-12)) over the last axis, and that norm."""
    norm = np.sqrt(np.maximum((x * x).sum(axis=-1, keepdims=True), TINY))
    return x / norm, norm


@losses.register("cosine_proximity", "cosine", "CosineProximity", "cosine_similarity",
                 "CosineSimilarity")
class CosineProximity(RowLoss):
    """-sum(l2_normalize(y_true) · l2_normalize(y_pred), axis=-1): -1 for aligned
    vectors, 1 for opposite ones, as Keras 2 (where 'lower is better'). As a metric,
    ``CosineSimilarity``/``cosine_similarity`` give the positive similarity instead."""

    def rows(self, t, p):
        return -(l2_normalize(t)[0] * l2_normalize(p)[0]).sum(axis=-1)

    def rows_gradient(self, t, p):
        u, _ = l2_normalize(t)
        v, norm = l2_normalize(p)
        # d(-u·p/|p|)/dp = -(u - (u·v) v) / |p| (where |p|² > 1e-12)
        big = (p * p).sum(axis=-1, keepdims=True) > TINY
        return np.where(big, -(u - (u * v).sum(axis=-1, keepdims=True) * v), -u) / norm
