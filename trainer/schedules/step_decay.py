"""StepDecay: multiply the lr by a factor every so many steps (or epochs)."""

import math

from trainer.config.families import schedules
from trainer.schedules.base import NonNegative, Positive, Schedule


@schedules.register("StepDecay")
class StepDecay(Schedule):
    """lr(step) = initial_learning_rate · drop_rate ^ ⌊step / drop_every⌋.

    Not a Keras class: the classic ``step_decay`` function people pass to Keras's
    LearningRateScheduler, made declarative. As an optimizer's lr, ``step`` counts
    optimizer steps; from LearningRateScheduler it counts epochs, so
    ``{StepDecay: {initial_learning_rate: 0.1, drop_rate: 0.5, drop_every: 10}}``
    halves the lr every 10 epochs there.

    Args:
        initial_learning_rate: the lr until the first drop.
        drop_rate: 0.5, the factor applied at each drop.
        drop_every: 10, steps (or epochs) between drops, > 0.
    """

    def __init__(self, initial_learning_rate: NonNegative, drop_rate: Positive = 0.5,
                 drop_every: Positive = 10):
        self.initial_learning_rate = self.number(initial_learning_rate,
                                                 "initial_learning_rate", minimum=0.0)
        self.drop_rate = self.number(drop_rate, "drop_rate", positive=True)
        self.drop_every = self.number(drop_every, "drop_every", positive=True)

    def __call__(self, step):
        return self.initial_learning_rate * self.drop_rate ** math.floor(step / self.drop_every)
