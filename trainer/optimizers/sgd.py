"""SGD with momentum and Nesterov momentum, Keras 2 rules."""

import numpy as np

from trainer.optimizers.base import COMMON, LearningRate, Optimizer
from trainer.config.families import optimizers
from trainer.config.registry import Rate, arguments


@optimizers.register("SGD", "sgd")
class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum.

    Per step, for each parameter p with gradient g (Keras 2 / tf.keras 2.x)::

        momentum = 0:  p ← p - lr·g
        momentum > 0:  v ← momentum·v - lr·g
                       p ← p + v                       (nesterov=false)
                       p ← p + momentum·v - lr·g       (nesterov=true)

    Args:
        learning_rate (alias lr): 0.01, a number or a schedule
            (``{ExponentialDecay: {...}}``, see trainer/schedules).
        momentum: 0.0, in [0, 1].
        nesterov: false, Nesterov momentum.
        decay: 0.0, Keras 2 time decay lr / (1 + decay · iterations).
        clipnorm, clipvalue, global_clipnorm: none; gradient clipping
            (see trainer/optimizers/base.py).
    Slot: ``momentum`` (only when momentum > 0).
    """

    @arguments(COMMON)
    def __init__(self, learning_rate: LearningRate = 0.01, momentum: Rate = 0.0,
                 nesterov: bool = False, **args):
        super().__init__(learning_rate, **args)
        self.momentum = self.number(momentum, "momentum", minimum=0.0, maximum=1.0)
        self.nesterov = bool(nesterov)

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
