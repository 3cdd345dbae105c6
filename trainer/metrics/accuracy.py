"""Accuracy metrics, as Keras 2 computes them (a mean over the epoch)."""

import numpy as np

from trainer.metrics.base import MeanMetric
from trainer.config.families import losses, metrics
from trainer.config.registry import PositiveInt


def _ids(y_true, y_pred):
    """Class ids of shape y_pred.shape[:-1] from labels (N,) / (N, 1) / (N, T) / (N, T, 1)."""
    return np.asarray(y_true).reshape(y_pred.shape[:-1]).astype(np.int64)


def in_top_k(y_pred, ids, k):
    """True where the class ``ids`` is among the top k predictions, as tf.nn.in_top_k:
    classes tied with the k-th largest all count as in the top k (a hit when fewer than
    k predictions are strictly larger); a row holding NaN or Inf is never a hit."""
    target = np.take_along_axis(y_pred, ids[..., None], axis=-1)
    larger = (y_pred > target).sum(axis=-1)
    return (larger < k) & np.isfinite(y_pred).all(axis=-1)


@metrics.register("binary_accuracy", "BinaryAccuracy")
class BinaryAccuracy(MeanMetric):
    """mean(y_true == (y_pred > threshold), axis=-1); labels 0/1.

    Args:
        threshold (default 0.5): a prediction above it is class 1 (0.5 itself is 0).
    """

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        super().__init__()

    def values(self, y_true, y_pred):
        hit = (np.asarray(y_true).reshape(y_pred.shape) == (y_pred > self.threshold))
        return hit.reshape(len(y_pred), -1).mean(axis=1)


@metrics.register("categorical_accuracy", "CategoricalAccuracy")
class CategoricalAccuracy(MeanMetric):
    """argmax(y_true, -1) == argmax(y_pred, -1), labels one-hot; ties in y_pred go
    to the first class."""

    categorical = True

    def __init__(self):
        super().__init__()

    def values(self, y_true, y_pred):
        t = np.asarray(y_true).reshape(y_pred.shape)
        return (np.argmax(t, axis=-1) == np.argmax(y_pred, axis=-1)).astype(np.float64)


@metrics.register("sparse_categorical_accuracy", "SparseCategoricalAccuracy")
class SparseCategoricalAccuracy(MeanMetric):
    """y_true == argmax(y_pred, -1); labels are class ids."""

    labels = "sparse"

    def __init__(self):
        super().__init__()

    def values(self, y_true, y_pred):
        return (_ids(y_true, y_pred) == np.argmax(y_pred, axis=-1)).astype(np.float64)


@metrics.register("top_k_categorical_accuracy", "TopKCategoricalAccuracy", "top_k")
class TopKCategoricalAccuracy(MeanMetric):
    """Whether argmax(y_true) is in the top k of y_pred (ties as tf.nn.in_top_k:
    every class tied with the k-th largest counts). Labels one-hot.

    Args:
        k (default 5): how many of the largest predictions count.
    """

    categorical = True

    def __init__(self, k: PositiveInt = 5):
        self.k = k
        super().__init__()

    def values(self, y_true, y_pred):
        t = np.asarray(y_true).reshape(y_pred.shape)
        return in_top_k(y_pred, np.argmax(t, axis=-1), self.k).astype(np.float64)


@metrics.register("sparse_top_k_categorical_accuracy", "SparseTopKCategoricalAccuracy")
class SparseTopKCategoricalAccuracy(MeanMetric):
    """Whether the class id y_true is in the top k of y_pred (ties as
    top_k_categorical_accuracy).

    Args:
        k (default 5): how many of the largest predictions count.
    """

    labels = "sparse"

    def __init__(self, k: PositiveInt = 5):
        self.k = k
        super().__init__()

    def values(self, y_true, y_pred):
        return in_top_k(y_pred, _ids(y_true, y_pred), self.k).astype(np.float64)


def resolve_accuracy(loss, output_units):
    """What ``accuracy``/``acc`` means, as Keras 2 decides it: binary_accuracy for
    binary_crossentropy or a single output unit, sparse_categorical_accuracy for
    sparse_categorical_crossentropy, categorical_accuracy otherwise.

    ``loss`` is a loss name or instance. With a ``from_logits`` binary cross-entropy
    the threshold is 0 (sigmoid(z) > 0.5 ⇔ z > 0) where Keras 2 would compare logits
    with 0.5.
    """
    if isinstance(loss, str):
        loss = losses.lookup(loss)
    cls = loss if isinstance(loss, type) else type(loss)
    binary = cls is losses.lookup("binary_crossentropy")
    if binary or output_units == 1:
        logits = getattr(loss, "from_logits", False) is True and binary
        return BinaryAccuracy(threshold=0.0 if logits else 0.5)
    if cls is losses.lookup("sparse_categorical_crossentropy") or \
            getattr(loss, "labels", None) == "sparse":  # a user loss taking class ids
        return SparseCategoricalAccuracy()
    return CategoricalAccuracy()
