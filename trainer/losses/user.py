"""A loss of the user's own: ``loss: {loss: "my_losses:FocalLoss", args: {gamma: 2.0}}``.

The engine has no autograd, so a user loss is a class with two methods:

- ``call(y_true, y_pred)``: the loss of each sample, shape ``(N,)``;
- ``gradient(y_true, y_pred)``: d loss_i / d y_pred, shape of ``y_pred``.

The model weighs the samples and divides by the batch size as it does for the
built-in losses (and applies loss weights per output), so neither method deals with
sample weights. ``y_true`` comes as an array of ``y_pred``'s shape and float type,
unless the class sets ``labels = "sparse"`` (class ids as given). Check the gradient
with ``trainer.testing.check_loss_gradient``.
"""

import numpy as np

from trainer.engine.layer import snake_case
from trainer.errors import ConfigError
from trainer.losses.base import Loss, dense_labels
from trainer.config.usercomponents import (check_signature, checked_gradient, fail, finite,
                                           first_bad_row, make_instance, method)


class UserLoss(Loss):
    """The user's loss class, checked against the loss contract as it runs."""

    def __init__(self, inner, ref):
        self.inner = inner
        self.ref = ref
        why = ("a loss is a class with call(y_true, y_pred) -> per-sample loss and "
               "gradient(y_true, y_pred) -> d loss/d y_pred: the engine has no autograd")
        self._call = method(inner, ("call",), ref, why)
        self._gradient = method(inner, ("gradient",), ref, why)
        check_signature(self._call, ("y_true", "y_pred"), ref, "call")
        check_signature(self._gradient, ("y_true", "y_pred"), ref, "gradient")
        self.name = getattr(inner, "name", None) if isinstance(
            getattr(inner, "name", None), str) else snake_case(type(inner).__name__)
        self.labels = getattr(inner, "labels", "dense")
        self.label_range = getattr(inner, "label_range", None)
        self.categorical = getattr(inner, "categorical", False)
        if self.labels not in ("dense", "sparse"):
            raise ConfigError(f"{ref}: labels must be 'dense' or 'sparse', got "
                              f"{self.labels!r}")

    def _true(self, y_true, y_pred):
        return dense_labels(y_true, y_pred) if self.labels == "dense" else np.asarray(y_true)

    def __call__(self, y_true, y_pred):
        values = np.asarray(self._call(self._true(y_true, y_pred), y_pred))
        if values.shape != (len(y_pred),):
            raise fail(self.ref, self.inner, f"call returned shape {values.shape} for a "
                       f"batch of {len(y_pred)}; it must return one loss per sample, "
                       f"shape ({len(y_pred)},)")
        if not finite(values) and finite(y_pred):
            raise fail(self.ref, self.inner, f"call returned NaN or Inf for finite "
                       f"predictions (batch row {first_bad_row(values)}); clip the "
                       f"predictions before log or division, as the built-in losses do")
        return values.astype(np.float64, copy=False)

    def gradient(self, y_true, y_pred):
        return checked_gradient(self.ref, self.inner,
                                self._gradient(self._true(y_true, y_pred), y_pred), y_pred,
                                "y_pred", "d loss_i / d y_pred, one value per element of "
                                          "y_pred")


def wrap(target, args, ref):
    return UserLoss(make_instance(target, args, ref,
                                  "a loss is a class with call(y_true, y_pred) and "
                                  "gradient(y_true, y_pred) (the engine has no autograd, so "
                                  "a function alone is not enough)"), ref)
