"""A metric of the user's own: ``metrics: [accuracy, {metric: "my_metrics:f1_macro"}]``.

Either a function ``(y_true, y_pred) -> per-sample values`` (shape ``(N,)``, or
``(N, T)`` counted T times per sample): its mean over the epoch is exact and takes
sample weights as the built-in metrics do; or a class with Keras's stateful
``update_state(y_true, y_pred, sample_weight=None)``, ``result()`` and
``reset_state()``, for metrics that are not a mean of per-sample values.

It is logged under its Keras-style name: the function's name (``f1_macro``), or the
class's in snake case (``MacroF1`` → ``macro_f1``) unless the instance has a ``name``.
A class's state (for mid-epoch checkpoints) is its ``get_state()``/``set_state()``
when it has them, else every attribute holding a number or a NumPy array.
"""

import inspect

import numpy as np

from trainer.engine.layer import snake_case
from trainer.errors import ConfigError
from trainer.losses.base import dense_labels
from trainer.metrics.base import MeanMetric, Metric
from trainer.config.usercomponents import (check_signature, fail, finite, first_bad_row, make,
                                    method, numeric_state, set_numeric_state)


def _contract(metric, inner):
    metric.labels = getattr(inner, "labels", "dense")
    metric.label_range = getattr(inner, "label_range", None)
    metric.categorical = getattr(inner, "categorical", False)


def _true(metric, y_true, y_pred):
    return dense_labels(y_true, y_pred) if metric.labels == "dense" else np.asarray(y_true)


class UserFunctionMetric(MeanMetric):
    """The weighted mean of the per-sample values of the user's function."""

    def __init__(self, fn, ref, name):
        self.fn = fn
        self.ref = ref
        self.name = name
        _contract(self, fn)
        super().__init__()

    def values(self, y_true, y_pred):
        v = np.asarray(self.fn(_true(self, y_true, y_pred), y_pred))
        if v.ndim == 0 or len(v) != len(y_pred):
            raise fail(self.ref, self.fn, f"returned shape {v.shape} for a batch of "
                       f"{len(y_pred)}; a metric function returns one value per sample, "
                       f"shape ({len(y_pred)},) (a class with update_state/result/"
                       f"reset_state is for metrics that are not per-sample means)")
        if not finite(v) and finite(y_pred):
            raise fail(self.ref, self.fn, f"returned NaN or Inf for finite predictions "
                       f"(batch row {first_bad_row(v)})")
        return v


class UserStatefulMetric(Metric):
    """Keras's stateful metric protocol: update_state, result, reset_state."""

    def __init__(self, inner, ref, name):
        self.inner = inner
        self.ref = ref
        self.name = name
        _contract(self, inner)
        why = ("a metric class has Keras's update_state(y_true, y_pred, sample_weight=None), "
               "result() and reset_state()")
        self._update = method(inner, ("update_state",), ref, why)
        self._result = method(inner, ("result",), ref, why)
        self._reset = method(inner, ("reset_state", "reset_states"), ref, why)
        check_signature(self._update, ("y_true", "y_pred"), ref, "update_state")
        check_signature(self._result, (), ref, "result")
        try:
            params = inspect.signature(self._update).parameters
            self._takes_weights = "sample_weight" in params or any(
                p.kind is p.VAR_KEYWORD for p in params.values())
        except ValueError:
            self._takes_weights = True

    def reset(self):
        self._reset()

    def update(self, y_true, y_pred, sample_weight=None):
        t = _true(self, y_true, y_pred)
        if sample_weight is None:
            self._update(t, y_pred)
        elif not self._takes_weights:
            raise fail(self.ref, self.inner, "update_state takes no sample_weight, but the "
                       "metric is in compile.weighted_metrics (or the batch has a timestep "
                       "mask); add a sample_weight=None argument")
        else:
            self._update(t, y_pred, sample_weight=np.asarray(sample_weight))

    def result(self):
        value = self._result()
        try:
            value = float(np.asarray(value))
        except (TypeError, ValueError):
            raise fail(self.ref, self.inner, f"result() must return a number, got "
                       f"{type(value).__name__}") from None
        if not np.isfinite(value):
            raise fail(self.ref, self.inner, f"result() returned {value}; return 0 where "
                       f"the metric is undefined (no samples, 0/0), as Keras's metrics do")
        return value

    def get_state(self):
        return numeric_state(self.inner)

    def set_state(self, state):
        set_numeric_state(self.inner, state)


def wrap(target, args, ref):
    if isinstance(target, type):
        inner = make(target, args, ref)
        own = getattr(inner, "name", None)
        name = own if isinstance(own, str) and own else snake_case(target.__name__)
        metric = UserStatefulMetric(inner, ref, name)
        metric.reset()
        return metric
    fn = make(target, args, ref)
    check_signature(fn, ("y_true", "y_pred"), ref, "a metric function")
    name = getattr(target, "__name__", None)
    if not name or name == "<lambda>":
        raise ConfigError(f"{ref}: a metric function needs a name to be logged under")
    return UserFunctionMetric(fn, ref, name)
