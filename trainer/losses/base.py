"""The loss contract.

``loss(y_true, y_pred)`` returns one value per sample, shape ``(N,)`` (Keras reduces
the last axis first). ``loss.gradient(y_true, y_pred)`` returns d value_i / d y_pred,
shape of ``y_pred``. The model weights samples and divides by the batch size, as
Keras 2's SUM_OVER_BATCH_SIZE reduction does.
"""

import numpy as np

EPSILON = 1e-7  # Keras backend epsilon, used for clipping


class Loss:
    #: which kind of labels it wants: "dense" (same shape as y_pred) or "sparse" (class ids)
    labels = "dense"

    def __call__(self, y_true, y_pred):
        raise NotImplementedError

    def gradient(self, y_true, y_pred):
        raise NotImplementedError


def per_sample_mean(values):
    """Mean over every axis but the first."""
    return values.reshape(values.shape[0], -1).mean(axis=1)


def last_axis_size(y):
    return int(np.prod(y.shape[1:])) if y.ndim > 1 else 1
