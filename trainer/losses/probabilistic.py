"""Losses between distributions or counts, Keras 2 formulas."""

import numpy as np

from trainer.losses.base import EPSILON, ElementwiseLoss, RowLoss
from trainer.config.families import losses


@losses.register("kullback_leibler_divergence", "kld", "KLD", "kl_divergence",
                 "KLDivergence")
class KLDivergence(RowLoss):
    """sum(t · log(t / p), axis=-1) with t = y_true and p = y_pred both clipped to
    [1e-7, 1]. Labels are distributions over the last axis (one-hot is fine)."""

    label_range = (0.0, 1.0)
    categorical = True

    def rows(self, t, p):
        t = np.clip(t, EPSILON, 1.0)
        return (t * np.log(t / np.clip(p, EPSILON, 1.0))).sum(axis=-1)

    def rows_gradient(self, t, p):
        inside = (p > EPSILON) & (p < 1.0)
        return -(inside * np.clip(t, EPSILON, 1.0)) / np.clip(p, EPSILON, 1.0)


@losses.register("poisson", "Poisson")
class Poisson(ElementwiseLoss):
    """mean(y_pred - y_true · log(y_pred + 1e-7), axis=-1). y_pred must be positive
    (e.g. an exponential or softplus output); y_true are counts or rates."""

    def elementwise(self, t, p):
        return p - t * np.log(p + EPSILON)

    def elementwise_gradient(self, t, p):
        return 1.0 - t / (p + EPSILON)
