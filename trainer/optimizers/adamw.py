"""AdamW: Adam with decoupled weight decay, as tf.keras 2.11+ ``AdamW``."""

from trainer.optimizers.adam import Adam
from trainer.optimizers.base import COMMON, LearningRate, NonNegative
from trainer.config.families import optimizers
from trainer.config.registry import Rate, arguments


@optimizers.register("AdamW", "adamw")
class AdamW(Adam):
    """Adam whose weight decay is applied to the weights, not added to the gradient.

    Per step, for each parameter p (every parameter, biases included, as Keras),
    first the decay with the lr in force, then the Adam rule (see Adam)::

        p ← p - lr · weight_decay · p
        p ← Adam step of p with gradient g

    Args:
        learning_rate (alias lr): 0.001, a number or a schedule.
        weight_decay: 0.004.
        beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, amsgrad: false (as Adam).
        decay: 0.0, Keras 2 time decay lr / (1 + decay · iterations).
        clipnorm, clipvalue, global_clipnorm: none; gradient clipping.
    Slots: as Adam.
    """

    @arguments(COMMON)
    def __init__(self, learning_rate: LearningRate = 0.001, weight_decay: NonNegative = 0.004,
                 beta_1: Rate = 0.9, beta_2: Rate = 0.999, epsilon: NonNegative = 1e-7,
                 amsgrad: bool = False, **args):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, **args)
        self.weight_decay = self.number(weight_decay, "weight_decay", minimum=0.0)

    def update(self, i, p, g, lr):
        p -= (lr * self.weight_decay) * p
        super().update(i, p, g, lr)
