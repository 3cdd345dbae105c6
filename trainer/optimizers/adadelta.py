"""Adadelta, Keras 2 rule."""

import numpy as np

from trainer.optimizers.base import COMMON, LearningRate, NonNegative, Optimizer
from trainer.config.families import optimizers
from trainer.config.registry import Rate, arguments


@optimizers.register("Adadelta", "adadelta")
class Adadelta(Optimizer):
    """Step sizes from running averages of squared gradients and squared updates.

    Per step, for each parameter p with gradient g (Keras 2 / tf.keras 2.x)::

        a  ← ρ·a + (1-ρ)·g²
        Δ  = sqrt(d + ε) / sqrt(a + ε) · g
        d  ← ρ·d + (1-ρ)·Δ²
        p  ← p - lr·Δ

    Args:
        learning_rate (alias lr): 0.001, as tf.keras 2.x. Standalone Keras 2.2 (and the
            Adadelta paper) used 1.0: write ``lr: 1.0`` to get that behaviour.
        rho: 0.95, decay rate of both running averages.
        epsilon: 1e-7.
        decay: 0.0, Keras 2 time decay lr / (1 + decay · iterations).
        clipnorm, clipvalue, global_clipnorm: none; gradient clipping.
    Slots: ``accum_grad`` (a), ``accum_var`` (d).
    """

    @arguments(COMMON)
    def __init__(self, learning_rate: LearningRate = 0.001, rho: Rate = 0.95,
                 epsilon: NonNegative = 1e-7, **args):
        super().__init__(learning_rate, **args)
        self.rho = self.number(rho, "rho", minimum=0.0, maximum=1.0)
        self.epsilon = self.number(epsilon, "epsilon", minimum=0.0)

    def new_slots(self, p):
        return {"accum_grad": np.zeros_like(p), "accum_var": np.zeros_like(p)}

    def update(self, i, p, g, lr):
        a, d = self.slots[i]["accum_grad"], self.slots[i]["accum_var"]
        a *= self.rho
        a += (1 - self.rho) * (g * g)
        delta = np.sqrt(d + self.epsilon) / np.sqrt(a + self.epsilon) * g
        d *= self.rho
        d += (1 - self.rho) * (delta * delta)
        p -= lr * delta
