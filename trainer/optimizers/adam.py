"""Adam (and AMSGrad), Keras 2 rule."""

import math

import numpy as np

from trainer.engine.kernels import fused
from trainer.optimizers.base import COMMON, LearningRate, NonNegative, Optimizer
from trainer.config.families import optimizers
from trainer.config.registry import Rate, arguments


@optimizers.register("Adam", "adam")
class Adam(Optimizer):
    """Adaptive moment estimation.

    Per step t = 1, 2, … for each parameter p with gradient g (Keras 2 / tf.keras 2.x,
    the bias correction folded into the step size, ε outside the square root)::

        m ← β₁·m + (1-β₁)·g
        v ← β₂·v + (1-β₂)·g²
        lr_t = lr · sqrt(1-β₂ᵗ) / (1-β₁ᵗ)
        p ← p - lr_t · m / (sqrt(v) + ε)

    With amsgrad, v̂ ← max(v̂, v) replaces v in the last line.

    Args:
        learning_rate (alias lr): 0.001, a number or a schedule.
        beta_1: 0.9, beta_2: 0.999, decay rates of the moment estimates.
        epsilon: 1e-7.
        amsgrad: false.
        decay: 0.0, Keras 2 time decay lr / (1 + decay · iterations).
        clipnorm, clipvalue, global_clipnorm: none; gradient clipping.
    Slots: ``m``, ``v``; ``vhat`` with amsgrad.
    """

    @arguments(COMMON)
    def __init__(self, learning_rate: LearningRate = 0.001, beta_1: Rate = 0.9,
                 beta_2: Rate = 0.999, epsilon: NonNegative = 1e-7, amsgrad: bool = False,
                 **args):
        super().__init__(learning_rate, **args)
        self.beta_1 = self.number(beta_1, "beta_1", minimum=0.0, maximum=1.0)
        self.beta_2 = self.number(beta_2, "beta_2", minimum=0.0, maximum=1.0)
        self.epsilon = self.number(epsilon, "epsilon", minimum=0.0)
        self.amsgrad = bool(amsgrad)

    def new_slots(self, p):
        slots = {"m": np.zeros_like(p), "v": np.zeros_like(p)}
        if self.amsgrad:
            slots["vhat"] = np.zeros_like(p)
        return slots

    def update(self, i, p, g, lr):
        s = self.slots[i]
        t = self.iterations  # already incremented: the first step has t = 1
        m, v = s["m"], s["v"]
        lr_t = lr * math.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)
        if not self.amsgrad and fused.adam_update(p, g, m, v, self.beta_1, self.beta_2,
                                                  self.epsilon, lr_t):
            return  # the same numbers in one pass (trainer/engine/kernels/fused.py)
        m *= self.beta_1
        m += (1 - self.beta_1) * g
        v *= self.beta_2
        v += (1 - self.beta_2) * (g * g)
        if self.amsgrad:
            np.maximum(s["vhat"], v, out=s["vhat"])
            v = s["vhat"]
        p -= lr_t * m / (np.sqrt(v) + self.epsilon)
