"""Adam, Keras 2 rule."""

import numpy as np

from trainer.optimizers.base import Optimizer
from trainer.registries import optimizers
from trainer.registry import component


@optimizers.register("Adam", "adam")
class Adam(Optimizer):
    """t += 1; m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²;
    lr_t = lr·sqrt(1-β2^t)/(1-β1^t); p -= lr_t·m / (sqrt(v) + ε).
    With amsgrad, v̂ = max(v̂, v) replaces v in the denominator.

    Args: lr/learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=false,
    decay=0.0, clipnorm, clipvalue, global_clipnorm.
    """

    def __init__(self, learning_rate: float | component("schedule") = 0.001,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 amsgrad: bool = False, decay: float = 0.0,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, lr: float | None = None):
        super().__init__(learning_rate, lr, decay, clipnorm, clipvalue, global_clipnorm)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.amsgrad = amsgrad

    def new_slots(self, p):
        slots = {"m": np.zeros_like(p), "v": np.zeros_like(p)}
        if self.amsgrad:
            slots["vhat"] = np.zeros_like(p)
        return slots

    def update(self, i, p, g, lr):
        s = self.slots[i]
        t = self.iterations  # already incremented: the first step has t = 1
        s["m"] *= self.beta_1
        s["m"] += (1 - self.beta_1) * g
        s["v"] *= self.beta_2
        s["v"] += (1 - self.beta_2) * (g * g)
        lr_t = lr * np.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)
        v = s["v"]
        if self.amsgrad:
            np.maximum(s["vhat"], v, out=s["vhat"])
            v = s["vhat"]
        p -= (lr_t * s["m"] / (np.sqrt(v) + self.epsilon)).astype(p.dtype, copy=False)
