"""ExponentialDecay, as tf.keras 2.x."""

import math

from trainer.config.families import schedules
from trainer.schedules.base import NonNegative, Positive, Schedule


@schedules.register("ExponentialDecay")
class ExponentialDecay(Schedule):
    """lr(step) = initial_learning_rate · decay_rate ^ (step / decay_steps),
    with the exponent floored (step / decay_steps → ⌊step / decay_steps⌋) when staircase.

    Args:
        initial_learning_rate: the lr at step 0.
        decay_steps: > 0, steps per factor of decay_rate.
        decay_rate: > 0, the factor.
        staircase: false; true decays in whole steps of decay_steps.
    """

    def __init__(self, initial_learning_rate: NonNegative, decay_steps: Positive,
                 decay_rate: Positive, staircase: bool = False):
        self.initial_learning_rate = self.number(initial_learning_rate,
                                                 "initial_learning_rate", minimum=0.0)
        self.decay_steps = self.number(decay_steps, "decay_steps", positive=True)
        self.decay_rate = self.number(decay_rate, "decay_rate", positive=True)
        self.staircase = bool(staircase)

    def __call__(self, step):
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p
