"""The loss contract.

``loss(y_true, y_pred)`` returns one value per sample, shape ``(N,)``: Keras reduces
the last axis first (a mean, or a sum for the losses over a distribution), then we
average whatever axes remain between the batch and the last (timesteps, pixels), as
Keras 2's mean over the score array does. ``loss.gradient(y_true, y_pred)`` returns
d value_i / d y_pred, shape of ``y_pred``. The model weights samples and divides by
the batch size, as Keras 2's SUM_OVER_BATCH_SIZE reduction does.

Labels of shape ``(N,)`` for an output of shape ``(N, 1)`` are taken as ``(N, 1)``,
as Keras 2 expands them.
"""

import numpy as np

EPSILON = 1e-7  # Keras backend epsilon, used for clipping


class Loss:
    #: which kind of labels it wants: "dense" (same shape as y_pred) or "sparse" (class ids)
    labels = "dense"
    #: the closed range label values must lie in, or None when any real value is fine
    label_range = None
    #: True when labels are rows over classes (one-hot), so class ids get a hint
    categorical = False

    def __call__(self, y_true, y_pred):
        raise NotImplementedError

    def gradient(self, y_true, y_pred):
        raise NotImplementedError


class ElementwiseLoss(Loss):
    """mean(f(t, p)) over every non-batch axis; subclasses give f and df/dp."""

    def elementwise(self, t, p):
        raise NotImplementedError

    def elementwise_gradient(self, t, p):
        raise NotImplementedError

    def __call__(self, y_true, y_pred):
        return per_sample_mean(self.elementwise(dense_labels(y_true, y_pred), y_pred))

    def gradient(self, y_true, y_pred):
        t = dense_labels(y_true, y_pred)
        return self.elementwise_gradient(t, y_pred) / sample_size(y_pred)


class RowLoss(Loss):
    """A value per row of the last axis (e.g. a sum over classes), averaged over the
    axes between batch and last; subclasses give the rows and their gradient."""

    def rows(self, t, p):
        raise NotImplementedError

    def rows_gradient(self, t, p):
        raise NotImplementedError

    def __call__(self, y_true, y_pred):
        return per_sample_mean(self.rows(dense_labels(y_true, y_pred), y_pred))

    def gradient(self, y_true, y_pred):
        t = dense_labels(y_true, y_pred)
        return self.rows_gradient(t, y_pred) / rows_per_sample(y_pred)


def dense_labels(y_true, y_pred):
    """Labels as an array of y_pred's shape and float type ((N,) → (N, 1) as Keras)."""
    t = np.asarray(y_true, dtype=y_pred.dtype if y_pred.dtype.kind == "f" else np.float64)
    if t.shape != y_pred.shape and t.size == y_pred.size and len(t) == len(y_pred):
        t = t.reshape(y_pred.shape)
    return t


def per_sample_mean(values):
    """Mean over every axis but the first."""
    if values.ndim == 1:  # one value per sample already (the usual case)
        return values
    return values.reshape(values.shape[0], -1).mean(axis=1)


def sample_size(y):
    """Elements per sample."""
    return int(np.prod(y.shape[1:])) if y.ndim > 1 else 1


def rows_per_sample(y):
    """Rows of the last axis per sample (1 for (N, K), T for (N, T, K))."""
    return int(np.prod(y.shape[1:-1])) if y.ndim > 2 else 1

