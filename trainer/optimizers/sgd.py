"""SGD with momentum and Nesterov momentum, Keras 2 rules."""

import numpy as np

from trainer.optimizers.base import Optimizer
from trainer.registries import optimizers
from trainer.registry import component


@optimizers.register("SGD", "sgd")
class SGD(Optimizer):
    """v = momentum·v - lr·g; p += v (or p += momentum·v - lr·g with nesterov).

    Args: lr/learning_rate=0.01, momentum=0.0, nesterov=false, decay=0.0, clipnorm,
    clipvalue, global_clipnorm.
    """

    def __init__(self, learning_rate: float | component("schedule") = 0.01,
                 momentum: float = 0.0, nesterov: bool = False, decay: float = 0.0,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, lr: float | None = None):
        super().__init__(learning_rate, lr, decay, clipnorm, clipvalue, global_clipnorm)
        self.momentum = momentum
        self.nesterov = nesterov

    def new_slots(self, p):
        return {"momentum": np.zeros_like(p)} if self.momentum else {}

    def update(self, i, p, g, lr):
        if not self.momentum:
            p -= lr * g
            return
        v = self.slots[i]["momentum"]
        v *= self.momentum
        v -= lr * g
        if self.nesterov:
            p += self.momentum * v - lr * g
        else:
            p += v
