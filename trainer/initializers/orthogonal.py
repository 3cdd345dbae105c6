"""The orthogonal initializer (Keras 2's default for recurrent kernels)."""

import numpy as np

from trainer.registries import initializers


@initializers.register("orthogonal", "Orthogonal")
class Orthogonal:
    """A random orthogonal matrix times ``gain`` (Saxe et al., 2014), as tf.keras 2.

    The shape is flattened to ``(prod(shape[:-1]), shape[-1])``; a normal matrix of the
    taller orientation is QR-factorised, and Q's columns take the signs of R's diagonal
    so the result is uniformly distributed. Rows (or columns, whichever are fewer) are
    orthonormal.

    Args:
        gain: multiplies the matrix (default 1.0).
        seed: ignored; the run's seed drives every random stream.
    """

    def __init__(self, gain: float = 1.0, seed: int | None = None):
        self.gain = gain
        self.seed = seed

    def __call__(self, shape, rng, dtype):
        if len(shape) < 2:
            raise ValueError(f"orthogonal needs a shape of at least 2 axes, got {shape}")
        rows = int(np.prod(shape[:-1]))
        cols = int(shape[-1])
        a = rng.normal(0.0, 1.0, (max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape).astype(dtype)
