"""Adamax, Keras 2 rule."""

import numpy as np

from trainer.optimizers.base import COMMON, LearningRate, NonNegative, Optimizer
from trainer.config.families import optimizers
from trainer.config.registry import Rate, arguments


@optimizers.register("Adamax", "adamax")
class Adamax(Optimizer):
    """Adam with the infinity norm in place of the second moment.

    Per step t = 1, 2, … for each parameter p with gradient g (Keras 2 / tf.keras 2.x)::

        m ← β₁·m + (1-β₁)·g
        u ← max(β₂·u, |g|)
        p ← p - lr / (1-β₁ᵗ) · m / (u + ε)

    Args:
        learning_rate (alias lr): 0.001 (tf.keras 2.x; standalone Keras 2.2 had 0.002),
            a number or a schedule.
        beta_1: 0.9, beta_2: 0.999.
        epsilon: 1e-7.
        decay: 0.0, Keras 2 time decay lr / (1 + decay · iterations).
        clipnorm, clipvalue, global_clipnorm: none; gradient clipping.
    Slots: ``m``, ``u``.
    """

    @arguments(COMMON)
    def __init__(self, learning_rate: LearningRate = 0.001, beta_1: Rate = 0.9,
                 beta_2: Rate = 0.999, epsilon: NonNegative = 1e-7, **args):
        super().__init__(learning_rate, **args)
        self.beta_1 = self.number(beta_1, "beta_1", minimum=0.0, maximum=1.0)
        self.beta_2 = self.number(beta_2, "beta_2", minimum=0.0, maximum=1.0)
        self.epsilon = self.number(epsilon, "epsilon", minimum=0.0)

    def new_slots(self, p):
        return {"m": np.zeros_like(p), "u": np.zeros_like(p)}

    def update(self, i, p, g, lr):
        m, u = self.slots[i]["m"], self.slots[i]["u"]
        m *= self.beta_1
        m += (1 - self.beta_1) * g
        u *= self.beta_2
        np.maximum(u, np.abs(g), out=u)
        p -= (lr / (1 - self.beta_1 ** self.iterations)) * m / (u + self.epsilon)
