"""An initializer of the user's own:
``kernel_initializer: {initializer: "my_inits:scaled_normal", args: {scale: 0.1}}``.

A function ``(shape, rng, dtype) -> array`` (``args`` bound as keywords), or a class
built with ``args`` whose instances are called so. ``rng`` is the run's weight-init
NumPy Generator: draw from it, and the weights follow the seed as the built-in
initializers do.
"""

import numpy as np

from trainer.config.usercomponents import check_signature, fail, finite, make


class UserInitializer:
    def __init__(self, fn, ref):
        self.fn = fn
        self.ref = ref
        check_signature(fn, ("shape", "rng", "dtype"), ref, "an initializer")

    def __call__(self, shape, rng, dtype):
        shape = tuple(shape)
        value = np.asarray(self.fn(shape, rng, dtype))
        if value.shape != shape:
            raise fail(self.ref, self.fn, f"returned an array of shape {value.shape} for a "
                       f"weight of shape {shape}")
        if not finite(value):
            raise fail(self.ref, self.fn, f"returned NaN or Inf for a weight of shape {shape}")
        return value.astype(dtype, copy=False)


def wrap(target, args, ref):
    return UserInitializer(make(target, args, ref), ref)
