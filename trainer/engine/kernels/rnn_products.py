"""The weight gradients of the recurrent layers, ``x.T @ d`` summed over every time
step and sample (``T·B`` rows: 6400 for an LSTM at batch 64 over 100 steps), split over
the engine's threads by columns of ``d``.

``parallel.matmul`` splits ``x.T`` by rows (the kernel's input features), so each
thread packs the whole of ``d``, the biggest operand (26 MB for that LSTM's gate
gradients), and reads it through the cache again. By columns, each thread packs half
of ``d`` and all of the smaller ``x``: one thread's half of the LSTM's ``dU`` (256 ×
6400 @ 6400 × 1024) took 11.4 ms by rows and 10.0 ms by columns, ``dW`` (128 × 6400
@ 6400 × 1024) 7.2 ms and 5.3 ms (OpenBLAS SkylakeX kernels, one thread each).
A Dense layer's weight gradient (a batch of 128 rows) is no faster by columns, so
Dense keeps ``parallel.matmul``.

The column blocks hang on the size alone (about ``COLUMN_BLOCK`` columns each), never
on the thread count: one thread runs the same blocks one after the other. An
OpenBLAS sgemm's bits may depend on where a product is cut (its Haswell kernels give
different last bits for a column computed in a 512-column block and in the whole
product), so a split chosen by the thread count would make the gradient depend on it.
"""

import numpy as np

from trainer.engine.kernels import parallel

#: the column blocks are about this wide (a 1024-gate LSTM: two blocks)
COLUMN_BLOCK = 512


def weight_gradient(x, d):
    """``x.T @ d`` for 2-D ``x (rows, m)`` and ``d (rows, n)``: a new ``(m, n)`` array."""
    rows, m = x.shape
    n = d.shape[1]
    xt = x.T
    blocks = 1 if m * rows * n < parallel.MATMUL_SPLIT else max(1, round(n / COLUMN_BLOCK))
    if blocks == 1:
        return xt @ d
    bounds = parallel.split(n, blocks)
    out = np.empty((m, n), dtype=np.result_type(x, d))

    def run_blocks(first, last):
        for a, b in bounds[first:last]:
            np.matmul(xt, d[:, a:b], out=out[:, a:b])

    parallel.run(run_blocks, len(bounds), min_items=1)
    return out
