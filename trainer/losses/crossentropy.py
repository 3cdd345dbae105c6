"""Cross-entropy losses, tf.keras 2 backend formulas: probabilities clipped to
[1e-7, 1 - 1e-7] (the gradient is 0 where the clip is active), or ``from_logits``
computed stably. Each keeps tf.keras 2's order of operations, which matters at
predictions of exactly 0 or 1 and for rows that do not sum to 1:

- binary: clip, then ``log(p + ε)`` and ``log(1 - p + ε)``;
- categorical: normalise the row, then clip;
- sparse categorical: clip, then normalise (a log-softmax of the clipped log-probabilities).
"""

import numpy as np

from trainer.errors import DataError
from trainer.losses.base import (EPSILON, ElementwiseLoss, Loss, RowLoss, dense_labels,
                                 per_sample_mean, rows_per_sample)
from trainer.config.families import losses
from trainer.config.registry import Rate


def sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@losses.register("binary_crossentropy", "BinaryCrossentropy", "bce")
class BinaryCrossentropy(ElementwiseLoss):
    """mean(-(t·log(p + ε) + (1-t)·log(1 - p + ε)), axis=-1), p = y_pred clipped to
    [ε, 1-ε], ε = 1e-7 (tf.keras 2's backend, ``+ ε`` included).

    Args:
        from_logits (default false): y_pred are logits; p = sigmoid(y_pred), and the
            value is max(z, 0) - z·t + log(1 + exp(-|z|)), without clipping.
        label_smoothing (default 0): s in [0, 1] replaces t by t·(1-s) + s/2.

    Labels are in [0, 1], shape of the output ((N,) is taken as (N, 1)).
    """

    label_range = (0.0, 1.0)

    def __init__(self, from_logits: bool = False, label_smoothing: Rate = 0.0):
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing

    def _targets(self, t):
        s = self.label_smoothing
        return t * (1 - s) + 0.5 * s if s else t

    def elementwise(self, t, z):
        t = self._targets(t)
        if self.from_logits:
            return np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
        p = np.clip(z, EPSILON, 1 - EPSILON)
        return -(t * np.log(p + EPSILON) + (1 - t) * np.log(1 - p + EPSILON))

    def elementwise_gradient(self, t, z):
        t = self._targets(t)
        if self.from_logits:
            return sigmoid(z) - t
        inside = (z > EPSILON) & (z < 1 - EPSILON)
        p = np.clip(z, EPSILON, 1 - EPSILON)
        return inside * ((1 - t) / (1 - p + EPSILON) - t / (p + EPSILON))


@losses.register("categorical_crossentropy", "CategoricalCrossentropy", "cce")
class CategoricalCrossentropy(RowLoss):
    """-sum(t · log(p), axis=-1) with p = y_pred / sum(y_pred, axis=-1) clipped to
    [1e-7, 1-1e-7].

    Args:
        from_logits (default false): y_pred are logits; p = softmax(y_pred),
            computed as a stable log-softmax, without clipping.
        label_smoothing (default 0): s in [0, 1] replaces t by t·(1-s) + s/classes.

    Labels are one-hot rows of the output's width (``to_categorical``); for class ids
    use ``sparse_categorical_crossentropy``.
    """

    label_range = (0.0, 1.0)
    categorical = True

    def __init__(self, from_logits: bool = False, label_smoothing: Rate = 0.0):
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing

    def _targets(self, t):
        s = self.label_smoothing
        return t * (1 - s) + s / t.shape[-1] if s else t

    def rows(self, t, y):
        t = self._targets(t)
        if self.from_logits:
            return -(t * log_softmax(y)).sum(axis=-1)
        p = np.clip(y / y.sum(axis=-1, keepdims=True), EPSILON, 1 - EPSILON)
        return -(t * np.log(p)).sum(axis=-1)

    def rows_gradient(self, t, y):
        t = self._targets(t)
        if self.from_logits:
            return np.exp(log_softmax(y)) * t.sum(axis=-1, keepdims=True) - t
        total = y.sum(axis=-1, keepdims=True)
        q = y / total
        inside = (q > EPSILON) & (q < 1 - EPSILON)
        dq = -t * inside / np.clip(q, EPSILON, 1 - EPSILON)
        # q = y / S: dL/dy_j = (dq_j - sum_k dq_k q_k) / S
        return (dq - (dq * q).sum(axis=-1, keepdims=True)) / total


def softmax_input_gradient(loss, y_true, y_pred):
    """Gradient of ``loss`` (categorical or sparse categorical cross-entropy on
    probabilities) with respect to the *input* z of the softmax that made ``y_pred``,
    in one pass: p·sum(t) − t per row, divided by the rows per sample as the loss's
    mean is. Chaining the clipped loss gradient −t/p through the softmax Jacobian
    gives the same wherever no probability is clipped (p ≥ 1e-7); where one is,
    this is the exact gradient of the unclipped loss, as tf.keras computes it from the
    softmax's logits."""
    if isinstance(loss, SparseCategoricalCrossentropy):
        ids = loss.one_hot(y_true, y_pred, ids_only=True)  # checked class ids
        g = y_pred.copy()
        np.put_along_axis(g, ids[..., None], np.take_along_axis(g, ids[..., None], -1) - 1,
                          axis=-1)
    else:
        t = loss._targets(dense_labels(y_true, y_pred))
        g = y_pred * t.sum(axis=-1, keepdims=True)
        g -= t
    scale = rows_per_sample(y_pred)
    return g / g.dtype.type(scale) if scale != 1 else g


def fuses_with_softmax(loss):
    """Whether ``softmax_input_gradient`` applies to ``loss``."""
    return (isinstance(loss, (CategoricalCrossentropy, SparseCategoricalCrossentropy))
            and not loss.from_logits)


@losses.register("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy", "scce")
class SparseCategoricalCrossentropy(Loss):
    """categorical_crossentropy with integer class ids as labels: shape (N,) or (N, 1)
    for an output (N, classes); (N, T) or (N, T, 1) for (N, T, classes).

    On probabilities, as tf.keras 2's backend: q = y_pred clipped to [1e-7, 1-1e-7]
    first, then normalised: -log(q_t / sum(q)) (a log-softmax of log q). On rows that
    sum to 1 and need no clip this equals categorical_crossentropy's value.

    Args:
        from_logits (default false): y_pred are logits (softmax applied stably).
    """

    labels = "sparse"

    def __init__(self, from_logits: bool = False):
        self.from_logits = from_logits
        self._dense = CategoricalCrossentropy(from_logits=from_logits)

    def one_hot(self, y_true, y_pred, ids_only=False):
        k = y_pred.shape[-1]
        ids = np.asarray(y_true).reshape(y_pred.shape[:-1]).astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= k):
            raise DataError(
                f"sparse labels must be class ids in [0, {k - 1}] for an output of "
                f"{k} units, got values in [{ids.min()}, {ids.max()}]")
        if ids_only:
            return ids
        out = np.zeros(y_pred.shape, dtype=y_pred.dtype)
        np.put_along_axis(out, ids[..., None], 1, axis=-1)
        return out

    def __call__(self, y_true, y_pred):
        if self.from_logits:
            return self._dense(self.one_hot(y_true, y_pred), y_pred)
        ids = self.one_hot(y_true, y_pred, ids_only=True)[..., None]
        q = np.clip(y_pred, EPSILON, 1 - EPSILON)
        rows = np.log(q.sum(axis=-1)) - np.log(np.take_along_axis(q, ids, -1)[..., 0])
        return per_sample_mean(rows)

    def gradient(self, y_true, y_pred):
        if self.from_logits:
            return self._dense.gradient(self.one_hot(y_true, y_pred), y_pred)
        ids = self.one_hot(y_true, y_pred, ids_only=True)[..., None]
        inside = (y_pred > EPSILON) & (y_pred < 1 - EPSILON)
        q = np.clip(y_pred, EPSILON, 1 - EPSILON)
        # d/dq_j [log sum(q) - log q_t] = 1/sum(q) - [j == t]/q_t
        dq = np.broadcast_to(1 / q.sum(axis=-1, keepdims=True), q.shape).copy()
        np.put_along_axis(dq, ids, np.take_along_axis(dq, ids, -1)
                          - 1 / np.take_along_axis(q, ids, -1), axis=-1)
        return inside * dq / q.dtype.type(rows_per_sample(y_pred))
