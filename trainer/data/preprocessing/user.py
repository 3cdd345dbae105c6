"""A preprocessing step of the user's own, in ``data.preprocess``:
``x: [{step: "my_steps:ClipOutliers", args: {quantile: 0.99}}]``.

A class built with ``args`` whose instances transform an array,
``__call__(array) -> array`` (the same number of rows), applied to every split and
to each batch of a lazy one, in fit, evaluate and predict alike. A step that learns
from the training split gives ``fit(array)`` (the whole training array, as the
steps before it left it) or ``partial_fit(array)`` (called on pieces, for data
larger than memory; with optional ``begin_fit()``/``end_fit()``). What it learnt is
stored in the run's checkpoints: its ``get_state()``/``set_state()`` when it has
them, else every attribute holding a number or a NumPy array.
"""

import numpy as np

from trainer.data.preprocessing.steps import Step
from trainer.errors import ConfigError, DataError
from trainer.config.usercomponents import (check_signature, fail, finite, make_instance,
                                           numeric_state, set_numeric_state)


class UserStep(Step):
    def __init__(self, inner, ref):
        self.inner = inner
        self.ref = ref
        if not callable(inner):
            raise ConfigError(f"{ref}: a preprocessing step is a class whose instances are "
                              f"called on an array, __call__(array) -> array")
        check_signature(inner, ("array",), ref, "a preprocessing step")
        self.streams = callable(getattr(inner, "partial_fit", None))
        self.learns = self.streams or callable(getattr(inner, "fit", None))
        self._pieces = []

    def begin_fit(self):
        self._pieces = []
        if callable(getattr(self.inner, "begin_fit", None)):
            self.inner.begin_fit()

    def partial_fit(self, array):
        if self.streams:
            self.inner.partial_fit(array)
        else:
            self._pieces.append(np.asarray(array))

    def end_fit(self):
        if not self.streams:
            pieces, self._pieces = self._pieces, []
            if not pieces:
                raise DataError(f"{self.ref}: the training split has no rows to fit on")
            self.inner.fit(np.concatenate(pieces) if len(pieces) > 1 else pieces[0])
        elif callable(getattr(self.inner, "end_fit", None)):
            self.inner.end_fit()
        if not numeric_state(self.inner):  # evaluate and predict would have nothing
            raise fail(self.ref, self.inner, "learnt nothing that can be stored with the "
                       "run: keep what fit learns in attributes holding numbers or NumPy "
                       "arrays, or give the class get_state() and set_state()")

    def __call__(self, array):
        out = self.inner(array)
        if not hasattr(out, "shape") or np.ndim(out) == 0 or len(out) != len(array):
            raise fail(self.ref, self.inner, f"returned {_describe(out)} for {len(array)} "
                       f"rows; a step returns an array with one row per input row")
        if not finite(out) and finite(array):
            raise fail(self.ref, self.inner, "returned NaN or Inf for finite input")
        return out

    def get_state(self):
        return numeric_state(self.inner) if self.learns else {}

    def set_state(self, state):
        set_numeric_state(self.inner, state)


def _describe(out):
    shape = getattr(out, "shape", None)
    return f"shape {shape}" if shape is not None else type(out).__name__


def wrap(target, args, ref):
    return UserStep(make_instance(target, args, ref,
                                  "a preprocessing step is a class (its instances are "
                                  "called on an array, and may learn from the training "
                                  "split)"), ref)
