"""Hinge losses, Keras 2 formulas.

``hinge`` and ``squared_hinge`` want labels in {-1, 1}; labels that are all in {0, 1}
are taken as {-1, 1} (t → 2t - 1), as Keras 2 does, checked per batch.
"""

import numpy as np

from trainer.losses.base import ElementwiseLoss, RowLoss
from trainer.config.families import losses


def signed_labels(t):
    """{0, 1} labels as {-1, 1}; other labels unchanged."""
    if np.all((t == 0) | (t == 1)):
        return 2.0 * t - 1.0
    return t


@losses.register("hinge", "Hinge")
class Hinge(ElementwiseLoss):
    """mean(max(1 - y_true · y_pred, 0), axis=-1), labels in {-1, 1} (or {0, 1})."""

    def elementwise(self, t, p):
        return np.maximum(1.0 - signed_labels(t) * p, 0.0)

    def elementwise_gradient(self, t, p):
        s = signed_labels(t)
        return -s * (1.0 - s * p > 0)


@losses.register("squared_hinge", "SquaredHinge")
class SquaredHinge(ElementwiseLoss):
    """mean(max(1 - y_true · y_pred, 0)², axis=-1), labels in {-1, 1} (or {0, 1})."""

    def elementwise(self, t, p):
        return np.maximum(1.0 - signed_labels(t) * p, 0.0) ** 2

    def elementwise_gradient(self, t, p):
        s = signed_labels(t)
        return -2.0 * s * np.maximum(1.0 - s * p, 0.0)


@losses.register("categorical_hinge", "CategoricalHinge")
class CategoricalHinge(RowLoss):
    """max(neg - pos + 1, 0) with pos = sum(y_true · y_pred, axis=-1) and
    neg = max((1 - y_true) · y_pred, axis=-1). Labels one-hot (``to_categorical``)."""

    categorical = True

    def rows(self, t, p):
        pos = (t * p).sum(axis=-1)
        neg = ((1.0 - t) * p).max(axis=-1)
        return np.maximum(neg - pos + 1.0, 0.0)

    def rows_gradient(self, t, p):
        other = (1.0 - t) * p
        top = np.argmax(other, axis=-1)[..., None]  # the first of ties, a subgradient
        active = (self.rows(t, p) > 0)[..., None]
        dneg = np.zeros_like(p)
        np.put_along_axis(dneg, top, np.take_along_axis(1.0 - t, top, axis=-1), axis=-1)
        return active * (dneg - t)
