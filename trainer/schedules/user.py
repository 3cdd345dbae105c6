"""A learning-rate schedule of the user's own, wherever a built-in one goes:
``optimizer: {Adam: {learning_rate: {schedule: "my_lr:warmup", args: {peak: 0.01}}}}``.

A function ``(step) -> lr`` (``args`` bound as keywords), or a class built with
``args`` whose instances are called so. ``step`` counts from 0: the optimizer's
iterations, or the epoch index under LearningRateScheduler. The lr must be a finite
number ≥ 0.
"""

import math

from trainer.config.usercomponents import check_signature, fail, make


class UserSchedule:
    def __init__(self, fn, ref):
        self.fn = fn
        self.ref = ref
        check_signature(fn, ("step",), ref, "a schedule")

    def __call__(self, step):
        value = self.fn(step)
        try:
            lr = float(value)
        except (TypeError, ValueError):
            raise fail(self.ref, self.fn, f"returned {type(value).__name__} at step {step}; "
                       f"a schedule returns the learning rate, a number") from None
        if not math.isfinite(lr) or lr < 0:
            raise fail(self.ref, self.fn, f"returned lr {lr} at step {step}; it must be a "
                       f"finite number ≥ 0")
        return lr


def wrap(target, args, ref):
    return UserSchedule(make(target, args, ref), ref)
