"""RMSprop, Keras 2 rule."""

import numpy as np

from trainer.optimizers.base import Optimizer
from trainer.registries import optimizers
from trainer.registry import component


@optimizers.register("RMSprop", "rmsprop", "RMSProp")
class RMSprop(Optimizer):
    """v = ρ·v + (1-ρ)·g²; p -= lr·g / (sqrt(v) + ε).

    Args: lr/learning_rate=0.001, rho=0.9, epsilon=1e-7, decay=0.0, clipnorm,
    clipvalue, global_clipnorm.
    """

    def __init__(self, learning_rate: float | component("schedule") = 0.001,
                 rho: float = 0.9, epsilon: float = 1e-7, decay: float = 0.0,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, lr: float | None = None):
        super().__init__(learning_rate, lr, decay, clipnorm, clipvalue, global_clipnorm)
        self.rho = rho
        self.epsilon = epsilon

    def new_slots(self, p):
        return {"rms": np.zeros_like(p)}

    def update(self, i, p, g, lr):
        v = self.slots[i]["rms"]
        v *= self.rho
        v += (1 - self.rho) * (g * g)
        p -= (lr * g / (np.sqrt(v) + self.epsilon)).astype(p.dtype, copy=False)
