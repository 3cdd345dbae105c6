"""RMSprop, Keras 2 rule (plain, centered, with momentum)."""

import numpy as np

from trainer.engine.kernels import fused
from trainer.optimizers.base import COMMON, LearningRate, NonNegative, Optimizer
from trainer.config.families import optimizers
from trainer.config.registry import Rate, arguments


@optimizers.register("RMSprop", "rmsprop", "RMSProp")
class RMSprop(Optimizer):
    """Divide the gradient by a running root mean square of recent gradients.

    Per step, for each parameter p with gradient g (Keras 2 / tf.keras 2.x)::

        rms ← ρ·rms + (1-ρ)·g²
        d   ← rms                    (centered: mg ← ρ·mg + (1-ρ)·g;  d ← rms - mg²)
        momentum = 0:  p ← p - lr·g / (sqrt(d) + ε)
        momentum > 0:  mom ← momentum·mom + lr·g / sqrt(d + ε);  p ← p - mom

    The ε moves inside the square root with momentum > 0: tf.keras 2.x then runs
    TensorFlow's fused ApplyRMSProp kernel, which puts it there; we follow.

    Args:
        learning_rate (alias lr): 0.001, a number or a schedule.
        rho: 0.9, discount of the running average.
        momentum: 0.0.
        epsilon: 1e-7.
        centered: false; normalise by the estimated variance instead of the
            uncentered second moment.
        decay: 0.0, Keras 2 time decay lr / (1 + decay · iterations).
        clipnorm, clipvalue, global_clipnorm: none; gradient clipping.
    Slots: ``rms``; ``momentum`` when momentum > 0; ``mg`` when centered.
    """

    @arguments(COMMON)
    def __init__(self, learning_rate: LearningRate = 0.001, rho: Rate = 0.9,
                 momentum: Rate = 0.0, epsilon: NonNegative = 1e-7, centered: bool = False,
                 **args):
        super().__init__(learning_rate, **args)
        self.rho = self.number(rho, "rho", minimum=0.0, maximum=1.0)
        self.momentum = self.number(momentum, "momentum", minimum=0.0, maximum=1.0)
        self.epsilon = self.number(epsilon, "epsilon", minimum=0.0)
        self.centered = bool(centered)

    def new_slots(self, p):
        slots = {"rms": np.zeros_like(p)}
        if self.momentum:
            slots["momentum"] = np.zeros_like(p)
        if self.centered:
            slots["mg"] = np.zeros_like(p)
        return slots

    def update(self, i, p, g, lr):
        s = self.slots[i]
        rms = s["rms"]
        if (not self.centered and not self.momentum
                and fused.rmsprop_update(p, g, rms, self.rho, self.epsilon, lr)):
            return  # the same numbers in one pass (trainer/engine/kernels/fused.py)
        rms *= self.rho
        rms += (1 - self.rho) * (g * g)
        d = rms
        if self.centered:
            mg = s["mg"]
            mg *= self.rho
            mg += (1 - self.rho) * g
            d = rms - mg * mg
        if self.momentum:
            mom = s["momentum"]
            mom *= self.momentum
            mom += lr * g / np.sqrt(d + self.epsilon)
            p -= mom
        else:
            p -= lr * g / (np.sqrt(d) + self.epsilon)
