"""Accuracy metrics, as Keras 2 computes them."""

import numpy as np

from trainer.metrics.base import MeanMetric
from trainer.registries import metrics


@metrics.register("binary_accuracy", "BinaryAccuracy")
class BinaryAccuracy(MeanMetric):
    """mean(y_true == (y_pred > threshold)) over the last axis."""

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        super().__init__()

    def values(self, y_true, y_pred):
        hit = (np.asarray(y_true).reshape(y_pred.shape) == (y_pred > self.threshold))
        return hit.reshape(len(y_pred), -1).mean(axis=1)


@metrics.register("categorical_accuracy", "CategoricalAccuracy")
class CategoricalAccuracy(MeanMetric):
    """argmax(y_true) == argmax(y_pred); labels one-hot."""

    def __init__(self):
        super().__init__()

    def values(self, y_true, y_pred):
        return (np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)).astype(np.float64)


@metrics.register("sparse_categorical_accuracy", "SparseCategoricalAccuracy")
class SparseCategoricalAccuracy(MeanMetric):
    """y_true == argmax(y_pred); labels are class ids."""

    def __init__(self):
        super().__init__()

    def values(self, y_true, y_pred):
        ids = np.asarray(y_true).reshape(y_pred.shape[:-1])
        return (ids == np.argmax(y_pred, axis=-1)).astype(np.float64)


def resolve_accuracy(loss_name, output_units):
    """Keras 2: binary for binary_crossentropy or one output unit, sparse for
    sparse_categorical_crossentropy, categorical otherwise."""
    if loss_name in ("binary_crossentropy", "bce", "BinaryCrossentropy") or output_units == 1:
        metric = BinaryAccuracy()
    elif loss_name in ("sparse_categorical_crossentropy", "scce",
                       "SparseCategoricalCrossentropy"):
        metric = SparseCategoricalAccuracy()
    else:
        metric = CategoricalAccuracy()
    return metric
