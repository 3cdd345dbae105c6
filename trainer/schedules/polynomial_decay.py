"""PolynomialDecay, as tf.keras 2.x."""

import math

from trainer.config.families import schedules
from trainer.schedules.base import NonNegative, Positive, Schedule


@schedules.register("PolynomialDecay")
class PolynomialDecay(Schedule):
    """From initial_learning_rate to end_learning_rate along a polynomial::

        cycle = false:  s = min(step, decay_steps);  D = decay_steps
        cycle = true:   s = step;  D = decay_steps · max(1, ⌈step / decay_steps⌉)
        lr(step) = (initial_learning_rate - end_learning_rate) · (1 - s / D) ^ power
                   + end_learning_rate

    Args:
        initial_learning_rate: the lr at step 0.
        decay_steps: > 0.
        end_learning_rate: 0.0001.
        power: 1.0 (linear).
        cycle: false; true restarts the decay every D steps.
    """

    def __init__(self, initial_learning_rate: NonNegative, decay_steps: Positive,
                 end_learning_rate: NonNegative = 0.0001, power: float = 1.0,
                 cycle: bool = False):
        self.initial_learning_rate = self.number(initial_learning_rate,
                                                 "initial_learning_rate", minimum=0.0)
        self.decay_steps = self.number(decay_steps, "decay_steps", positive=True)
        self.end_learning_rate = self.number(end_learning_rate, "end_learning_rate",
                                             minimum=0.0)
        self.power = self.number(power, "power")
        self.cycle = bool(cycle)

    def __call__(self, step):
        if self.cycle:
            steps = self.decay_steps * max(1, math.ceil(step / self.decay_steps))
        else:
            step, steps = min(step, self.decay_steps), self.decay_steps
        span = self.initial_learning_rate - self.end_learning_rate
        return span * (1 - step / steps) ** self.power + self.end_learning_rate
