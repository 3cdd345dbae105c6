"""Adagrad, Keras 2 rule."""

import numpy as np

from trainer.optimizers.base import COMMON, LearningRate, NonNegative, Optimizer
from trainer.config.families import optimizers
from trainer.config.registry import arguments


@optimizers.register("Adagrad", "adagrad")
class Adagrad(Optimizer):
    """Per-parameter learning rates scaled by the sum of all past squared gradients.

    Per step, for each parameter p with gradient g (Keras 2 / tf.keras 2.x)::

        a ← a + g²                      (a starts at initial_accumulator_value)
        p ← p - lr·g / (sqrt(a) + ε)

    Args:
        learning_rate (alias lr): 0.001 (tf.keras 2.x; standalone Keras 2.2 had 0.01),
            a number or a schedule.
        initial_accumulator_value: 0.1, >= 0.
        epsilon: 1e-7.
        decay: 0.0, Keras 2 time decay lr / (1 + decay · iterations).
        clipnorm, clipvalue, global_clipnorm: none; gradient clipping.
    Slot: ``accumulator``.
    """

    @arguments(COMMON)
    def __init__(self, learning_rate: LearningRate = 0.001,
                 initial_accumulator_value: NonNegative = 0.1, epsilon: NonNegative = 1e-7,
                 **args):
        super().__init__(learning_rate, **args)
        self.initial_accumulator_value = self.number(
            initial_accumulator_value, "initial_accumulator_value", minimum=0.0)
        self.epsilon = self.number(epsilon, "epsilon", minimum=0.0)

    def new_slots(self, p):
        return {"accumulator": np.full_like(p, self.initial_accumulator_value)}

    def update(self, i, p, g, lr):
        a = self.slots[i]["accumulator"]
        a += g * g
        p -= lr * g / (np.sqrt(a) + self.epsilon)
