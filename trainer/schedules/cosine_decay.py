"""CosineDecay with optional linear warm-up, as tf.keras 2.13+."""

import math

from trainer.config.families import schedules
from trainer.config.registry import Rate
from trainer.schedules.base import NonNegative, Positive, Schedule


def cosine(fraction, alpha):
    """(1 - α) · ½(1 + cos(π · fraction)) + α, for fraction in [0, 1]."""
    return (1 - alpha) * 0.5 * (1 + math.cos(math.pi * fraction)) + alpha


@schedules.register("CosineDecay")
class CosineDecay(Schedule):
    """Half a cosine from a peak lr down to α · peak, after an optional linear warm-up.

    Without warm-up (warmup_target: null)::

        lr(step) = initial_learning_rate · cosine(min(step, decay_steps) / decay_steps)

    With warm-up (warmup_target set; W = warmup_steps)::

        step < W:  lr = initial_learning_rate
                        + (warmup_target - initial_learning_rate) · step / W
        else:      lr = warmup_target · cosine(min(step - W, decay_steps) / decay_steps)

    where cosine(f) = (1 - α) · ½(1 + cos(π f)) + α. So warm-up climbs from
    initial_learning_rate (often 0) to warmup_target, which then decays.

    With warmup_steps but no warmup_target, warm-up climbs from 0 to
    initial_learning_rate, which then decays (the common "cosine with linear warm-up";
    Keras would silently skip the warm-up there).

    Args:
        initial_learning_rate: the lr at step 0 (the peak when there is no warm-up).
        decay_steps: > 0, length of the cosine part.
        alpha: 0.0, the floor, as a fraction of the peak.
        warmup_target: null, the peak lr reached at the end of warm-up.
        warmup_steps: 0, length of the warm-up.
    """

    def __init__(self, initial_learning_rate: NonNegative, decay_steps: Positive,
                 alpha: Rate = 0.0, warmup_target: NonNegative | None = None,
                 warmup_steps: NonNegative = 0):
        self.initial_learning_rate = self.number(initial_learning_rate,
                                                 "initial_learning_rate", minimum=0.0)
        self.decay_steps = self.number(decay_steps, "decay_steps", positive=True)
        self.alpha = self.number(alpha, "alpha", minimum=0.0, maximum=1.0)
        self.warmup_target = self.number(warmup_target, "warmup_target", minimum=0.0)
        self.warmup_steps = self.number(warmup_steps, "warmup_steps", minimum=0.0)

    def __call__(self, step):
        if self.warmup_target is None and self.warmup_steps:
            if step < self.warmup_steps:
                return self.initial_learning_rate * step / self.warmup_steps
            done = min(step - self.warmup_steps, self.decay_steps)
            return self.initial_learning_rate * cosine(done / self.decay_steps, self.alpha)
        if self.warmup_target is None:
            return self.initial_learning_rate * cosine(
                min(step, self.decay_steps) / self.decay_steps, self.alpha)
        if step < self.warmup_steps:
            rise = self.warmup_target - self.initial_learning_rate
            return self.initial_learning_rate + rise * (step / self.warmup_steps)
        done = min(step - self.warmup_steps, self.decay_steps)
        return self.warmup_target * cosine(done / self.decay_steps, self.alpha)
