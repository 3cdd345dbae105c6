"""A regularizer of the user's own:
``kernel_regularizer: {regularizer: "my_regs:Orthogonality", args: {factor: 0.01}}``.

A class built with ``args`` whose instances give the penalty of a weight array
(``__call__(w)``, as Keras's, or ``penalty(w)``: a number added to the loss) and its
gradient (``gradient(w)``: d penalty / d w, shape of ``w``) — the engine has no
autograd. Used as an ``activity_regularizer`` it is given the layer's output.
"""

import numpy as np

from trainer.config.usercomponents import (check_signature, checked_gradient, fail, finite,
                                           make_instance, method)


class UserRegularizer:
    def __init__(self, inner, ref):
        self.inner = inner
        self.ref = ref
        why = ("a regularizer is a class with __call__(w) (or penalty(w)) -> penalty and "
               "gradient(w) -> d penalty/d w: the engine has no autograd")
        self._penalty = method(inner, ("penalty", "__call__"), ref, why)
        self._gradient = method(inner, ("gradient",), ref, why)
        check_signature(self._penalty, ("w",), ref, "the penalty")
        check_signature(self._gradient, ("w",), ref, "gradient")

    def penalty(self, w):
        value = self._penalty(w)
        try:
            value = float(np.asarray(value))
        except (TypeError, ValueError):
            raise fail(self.ref, self.inner, f"the penalty must be one number, got "
                       f"{type(value).__name__} of shape {np.shape(value)}") from None
        if not np.isfinite(value) and finite(w):
            raise fail(self.ref, self.inner, f"the penalty is {value} for finite weights "
                       f"of shape {w.shape}")
        return value

    def gradient(self, w):
        return checked_gradient(self.ref, self.inner, self._gradient(w), w, "weights",
                                "d penalty / d w")


def wrap(target, args, ref):
    return UserRegularizer(make_instance(target, args, ref,
                                         "a regularizer is a class with __call__(w) and "
                                         "gradient(w) (the engine has no autograd)"), ref)
