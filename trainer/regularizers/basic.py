"""l1, l2 and l1_l2 penalties as Keras 2 computes them (sum, not mean)."""

import numpy as np

from trainer.config.families import regularizers


@regularizers.register("l1_l2", "L1L2")
class L1L2:
    """penalty = l1 * sum(|w|) + l2 * sum(w²)."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1 = l1
        self.l2 = l2

    def penalty(self, w):
        total = 0.0
        if self.l1:
            total += self.l1 * float(np.abs(w).sum())
        if self.l2:
            total += self.l2 * float((w * w).sum())
        return total

    def gradient(self, w):
        dw = np.zeros_like(w)
        if self.l1:
            dw += self.l1 * np.sign(w)
        if self.l2:
            dw += 2 * self.l2 * w
        return dw


@regularizers.register("l1", "L1")
class L1(L1L2):
    def __init__(self, l1: float = 0.01):
        super().__init__(l1=l1)


@regularizers.register("l2", "L2")
class L2(L1L2):
    def __init__(self, l2: float = 0.01):
        super().__init__(l2=l2)
