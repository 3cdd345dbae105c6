"""Nadam, Keras 2 rule (Dozat's momentum schedule)."""

import numpy as np

from trainer.optimizers.base import COMMON, LearningRate, NonNegative, Optimizer
from trainer.config.families import optimizers
from trainer.config.registry import Rate, arguments


@optimizers.register("Nadam", "nadam")
class Nadam(Optimizer):
    """Adam with Nesterov momentum, and Dozat's warming momentum schedule.

    Per step t = 1, 2, … (Keras 2 / tf.keras 2.x), with s = schedule_decay::

        μ_t   = β₁·(1 - ½·0.96^(s·t)),   μ_t+1 = β₁·(1 - ½·0.96^(s·(t+1)))
        Π     ← Π·μ_t        (Π, the momentum cache, starts at 1; one per optimizer)
        then for each parameter p with gradient g:
        m ← β₁·m + (1-β₁)·g
        v ← β₂·v + (1-β₂)·g²
        m̄ = (1-μ_t)·g / (1-Π) + μ_t+1·m / (1 - Π·μ_t+1)
        p ← p - lr · m̄ / (sqrt(v / (1-β₂ᵗ)) + ε)

    Differences from tf.keras 2.x, which takes ``decay`` as the momentum schedule's
    decay and refuses schedules: here ``schedule_decay`` (standalone Keras 2's name)
    is that decay, and ``decay`` is the time decay every optimizer has; learning-rate
    schedules work.

    Args:
        learning_rate (alias lr): 0.001 (tf.keras 2.x; standalone Keras 2.2 had 0.002),
            a number or a schedule.
        beta_1: 0.9, beta_2: 0.999.
        epsilon: 1e-7.
        schedule_decay: 0.004.
        decay: 0.0, Keras 2 time decay lr / (1 + decay · iterations).
        clipnorm, clipvalue, global_clipnorm: none; gradient clipping.
    Slots: ``m``, ``v``; scalar ``momentum_cache`` (Π).
    """

    @arguments(COMMON)
    def __init__(self, learning_rate: LearningRate = 0.001, beta_1: Rate = 0.9,
                 beta_2: Rate = 0.999, epsilon: NonNegative = 1e-7, schedule_decay: NonNegative = 0.004,
                 **args):
        super().__init__(learning_rate, **args)
        self.beta_1 = self.number(beta_1, "beta_1", minimum=0.0, maximum=1.0)
        self.beta_2 = self.number(beta_2, "beta_2", minimum=0.0, maximum=1.0)
        self.epsilon = self.number(epsilon, "epsilon", minimum=0.0)
        self.schedule_decay = self.number(schedule_decay, "schedule_decay", minimum=0.0)
        self.scalars["momentum_cache"] = 1.0

    def new_slots(self, p):
        return {"m": np.zeros_like(p), "v": np.zeros_like(p)}

    def begin_step(self, lr):
        t = self.iterations
        self.mu_t = self.beta_1 * (1 - 0.5 * 0.96 ** (self.schedule_decay * t))
        self.mu_next = self.beta_1 * (1 - 0.5 * 0.96 ** (self.schedule_decay * (t + 1)))
        self.scalars["momentum_cache"] *= self.mu_t
        self.cache = self.scalars["momentum_cache"]

    def update(self, i, p, g, lr):
        m, v = self.slots[i]["m"], self.slots[i]["v"]
        m *= self.beta_1
        m += (1 - self.beta_1) * g
        v *= self.beta_2
        v += (1 - self.beta_2) * (g * g)
        m_bar = ((1 - self.mu_t) / (1 - self.cache)) * g \
            + (self.mu_next / (1 - self.cache * self.mu_next)) * m
        v_hat = v / (1 - self.beta_2 ** self.iterations)
        p -= lr * m_bar / (np.sqrt(v_hat) + self.epsilon)
