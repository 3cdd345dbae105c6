"""Cross-entropy losses, Keras 2 formulas (predictions clipped to [eps, 1 - eps])."""

import numpy as np

from trainer.errors import DataError
from trainer.losses.base import EPSILON, Loss, last_axis_size, per_sample_mean
from trainer.registries import losses
from trainer.registry import Rate


def _sigmoid(z):
    return np.where(z >= 0, 1 / (1 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))))


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@losses.register("binary_crossentropy", "BinaryCrossentropy", "bce")
class BinaryCrossentropy(Loss):
    """mean(-(t·log(p) + (1-t)·log(1-p)), axis=-1), p clipped to [1e-7, 1-1e-7].

    With ``from_logits`` p = sigmoid(y_pred), computed stably. ``label_smoothing`` s
    replaces t by t·(1-s) + s/2.
    """

    def __init__(self, from_logits: bool = False, label_smoothing: Rate = 0.0):
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing

    def _targets(self, y_true):
        s = self.label_smoothing
        return y_true * (1 - s) + 0.5 * s if s else y_true

    def __call__(self, y_true, y_pred):
        t = self._targets(y_true)
        if self.from_logits:
            z = y_pred  # log(1+exp(-|z|)) + max(z,0) - z·t
            return per_sample_mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z))))
        p = np.clip(y_pred, EPSILON, 1 - EPSILON)
        return per_sample_mean(-(t * np.log(p) + (1 - t) * np.log(1 - p)))

    def gradient(self, y_true, y_pred):
        t = self._targets(y_true)
        n = last_axis_size(y_pred)
        if self.from_logits:
            return (_sigmoid(y_pred) - t) / n
        inside = (y_pred > EPSILON) & (y_pred < 1 - EPSILON)
        p = np.clip(y_pred, EPSILON, 1 - EPSILON)
        return inside * (p - t) / (p * (1 - p)) / n


@losses.register("categorical_crossentropy", "CategoricalCrossentropy", "cce")
class CategoricalCrossentropy(Loss):
    """-sum(t · log(p), axis=-1) with p = y_pred / sum(y_pred) clipped to [1e-7, 1-1e-7].

    With ``from_logits`` p = softmax(y_pred). ``label_smoothing`` s replaces t by
    t·(1-s) + s/classes. Labels must be one-hot (``to_categorical``).
    """

    def __init__(self, from_logits: bool = False, label_smoothing: Rate = 0.0, axis: int = -1):
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing
        self.axis = axis

    def _targets(self, y_true):
        s = self.label_smoothing
        return y_true * (1 - s) + s / y_true.shape[-1] if s else y_true

    def __call__(self, y_true, y_pred):
        t = self._targets(y_true)
        if self.from_logits:
            return -(t * _log_softmax(y_pred)).sum(axis=-1).reshape(len(y_pred), -1).sum(axis=1)
        total = y_pred.sum(axis=-1, keepdims=True)
        p = np.clip(y_pred / total, EPSILON, 1 - EPSILON)
        return -(t * np.log(p)).sum(axis=-1).reshape(len(y_pred), -1).sum(axis=1)

    def gradient(self, y_true, y_pred):
        t = self._targets(y_true)
        if self.from_logits:
            return np.exp(_log_softmax(y_pred)) * t.sum(axis=-1, keepdims=True) - t
        total = y_pred.sum(axis=-1, keepdims=True)
        q = y_pred / total
        inside = (q > EPSILON) & (q < 1 - EPSILON)
        dq = -t * inside / np.clip(q, EPSILON, 1 - EPSILON)
        # q = y / S: dL/dy_j = (dq_j - sum_k dq_k q_k) / S
        return (dq - (dq * q).sum(axis=-1, keepdims=True)) / total


@losses.register("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy", "scce")
class SparseCategoricalCrossentropy(Loss):
    """categorical_crossentropy with integer class labels (shape (N,) or (N, 1))."""

    labels = "sparse"

    def __init__(self, from_logits: bool = False):
        self.from_logits = from_logits
        self._dense = CategoricalCrossentropy(from_logits=from_logits)

    def one_hot(self, y_true, y_pred):
        k = y_pred.shape[-1]
        ids = np.asarray(y_true).reshape(y_pred.shape[:-1]).astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= k):
            raise DataError(
                f"sparse labels must be class ids in [0, {k - 1}] for an output of "
                f"{k} units, got values in [{ids.min()}, {ids.max()}]")
        out = np.zeros(y_pred.shape, dtype=y_pred.dtype)
        np.put_along_axis(out, ids[..., None], 1, axis=-1)
        return out

    def __call__(self, y_true, y_pred):
        return self._dense(self.one_hot(y_true, y_pred), y_pred)

    def gradient(self, y_true, y_pred):
        return self._dense.gradient(self.one_hot(y_true, y_pred), y_pred)
