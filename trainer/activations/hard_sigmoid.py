"""hard_sigmoid, the Keras 2 piecewise-linear sigmoid (default recurrent activation)."""

import numpy as np

from trainer.activations.basic import Activation
from trainer.registries import activations


@activations.register("hard_sigmoid")
class HardSigmoid(Activation):
    """Keras 2: ``clip(0.2 * x + 0.5, 0, 1)``; slope 0.2 inside (-2.5, 2.5), 0 outside."""

    def forward(self, x):
        y = x * x.dtype.type(0.2)
        y += x.dtype.type(0.5)
        return np.clip(y, 0, 1, out=y)

    def backward(self, x, y, dy):
        return dy * ((x > -2.5) & (x < 2.5)) * x.dtype.type(0.2)
