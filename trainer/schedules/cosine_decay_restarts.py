"""CosineDecayRestarts (SGDR), as tf.keras 2.x."""

import math

from trainer.config.families import schedules
from trainer.config.registry import Rate
from trainer.schedules.base import NonNegative, Positive, Schedule


@schedules.register("CosineDecayRestarts")
class CosineDecayRestarts(Schedule):
    """Cosine decay that restarts: period i lasts first_decay_steps · t_mulⁱ steps and
    peaks at initial_learning_rate · m_mulⁱ::

        f = step / first_decay_steps
        t_mul = 1:  i = ⌊f⌋;  f ← f - i
        t_mul ≠ 1:  i = ⌊log(1 - f·(1 - t_mul)) / log(t_mul)⌋
                    f ← (f - (1 - t_mulⁱ) / (1 - t_mul)) / t_mulⁱ
        lr(step) = initial_learning_rate · ((1 - α) · m_mulⁱ · ½(1 + cos(π f)) + α)

    Args:
        initial_learning_rate: the lr at step 0.
        first_decay_steps: > 0, length of the first period.
        t_mul: 2.0, each period is t_mul times longer than the one before.
        m_mul: 1.0, each restart peaks at m_mul times the one before.
        alpha: 0.0, the floor, as a fraction of initial_learning_rate.
    """

    def __init__(self, initial_learning_rate: NonNegative, first_decay_steps: Positive,
                 t_mul: Positive = 2.0, m_mul: NonNegative = 1.0, alpha: Rate = 0.0):
        self.initial_learning_rate = self.number(initial_learning_rate,
                                                 "initial_learning_rate", minimum=0.0)
        self.first_decay_steps = self.number(first_decay_steps, "first_decay_steps",
                                             positive=True)
        self.t_mul = self.number(t_mul, "t_mul", positive=True)
        self.m_mul = self.number(m_mul, "m_mul", minimum=0.0)
        self.alpha = self.number(alpha, "alpha", minimum=0.0, maximum=1.0)

    def __call__(self, step):
        f = step / self.first_decay_steps
        if self.t_mul == 1.0:
            i = math.floor(f)
            f -= i
        else:
            i = math.floor(math.log(1 - f * (1 - self.t_mul)) / math.log(self.t_mul))
            f = (f - (1 - self.t_mul ** i) / (1 - self.t_mul)) / self.t_mul ** i
        peak = self.m_mul ** i
        return self.initial_learning_rate * (
            (1 - self.alpha) * peak * 0.5 * (1 + math.cos(math.pi * f)) + self.alpha)
