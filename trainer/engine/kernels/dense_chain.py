"""Inference of a chain of dense steps (Dense → Dropout → Dense → ... → softmax) as one
run: each part of the rows goes through the whole chain before the next part, with one
parallel region per call instead of one per layer (trainer/engine/fusion.py makes the
chains where no backward runs; the layers say what their step is).

Why (issue 28, measured on the 784-512-512-10 MLP at batch 1024, 2 threads): inside
``Model.predict_on_batch``'s slices of 512 rows, each Dense cut its rows again into
256-row GEMMs (OpenBLAS packs the whole kernel for every call) and went through the
graph's per-layer bookkeeping; one GEMM per layer on the slice, bias and relu in one
compiled pass on the fresh product, took ~10% less CPU per batch (in-process, same
bits on this machine's OpenBLAS). Smaller blocks did not pay: 128-row blocks (the
activations of a block in L2) cost more than they saved, because OpenBLAS packs the
kernel again for every block.

Parts and blocks are fixed by the number of rows (``parallel.run``'s parts, then blocks
of at most ``BLOCK_ROWS``), never by the thread count, so the numbers are the same on
any number of threads. Each step computes what the layer's own forward computes, in
the same order (``x @ W``, ``+= b`` and relu in place, then the activation); only where
the rows are cut differs from running the layers one by one, which changes a product's
last bits in some BLAS kernels (tests/test_dense_chain.py: within 1e-5 relative).
"""

import numpy as np

from trainer.engine.kernels import fused, parallel

#: rows are cut over the engine's threads in parts of at least this many (Dense's own
#: CHUNK_ROWS: below it one GEMM is cheaper than a join)
MIN_ROWS = 256
#: a part runs the chain on blocks of at most this many rows: the intermediate
#: activations alive are a block's, not the whole batch's (big predict batches), and a
#: block is still big enough for a GEMM (256 rows ran ~1% slower, 128 ~8%: the kernel
#: is packed once per GEMM)
BLOCK_ROWS = 512


class Dense:
    """``activation(x @ kernel + bias)``; ``relu``: the activation is relu, applied in
    place with the bias in one pass."""

    __slots__ = ("kernel", "bias", "relu", "activation")

    def __init__(self, kernel, bias, relu, activation):
        self.kernel, self.bias, self.relu, self.activation = kernel, bias, relu, activation

    def __call__(self, x):
        z = np.matmul(x, self.kernel)
        fused.bias_act(z, self.bias, self.relu)
        return z if self.relu else self.activation.forward(z)


class Activation:
    """An elementwise activation on its own (an Activation layer)."""

    __slots__ = ("activation",)

    def __init__(self, activation):
        self.activation = activation

    def __call__(self, x):
        return self.activation.forward(x)


class Identity:
    """A step that computes nothing (Dropout at inference): chains leave it out."""

    __slots__ = ()

    def __call__(self, x):
        return x


IDENTITY = Identity()


def run(x, steps):
    """The chain's output for ``x`` of shape (..., features): ``steps`` applied in
    order to each block of rows (the leading axes flattened)."""
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    n = len(flat)

    def chain(a, b):
        y = flat[a:b]
        for step in steps:
            y = step(y)
        return y

    def part(a, b):
        return [chain(a + s, a + e) for s, e in
                parallel.split(b - a, -(-(b - a) // BLOCK_ROWS))]

    blocks = [y for ys in parallel.run(part, n, min_items=MIN_ROWS) for y in ys]
    y = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    return y.reshape(*lead, y.shape[-1])
