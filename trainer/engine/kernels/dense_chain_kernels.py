"""The compiled kernels of the dense chains (trainer/engine/kernels/dense_chain.py,
whose doc says when they run). A module of its own, imported on first use:
module-level functions cache on disk.

``narrow_softmax``: a softmax output of at most ``NB`` units, its product, bias and
softmax in one pass over the block's rows. OpenBLAS runs a 512×512 · 512×16 product at
~60-70 GFLOP/s (a GEMM kernel meant for wide outputs: 72-89 µs), then the bias and
softmax take another pass (~13 µs). Here a register block of ``MB`` rows × ``NB``
columns (8 zmm accumulators under AVX-512) runs through the whole K, one broadcast of
x and one fused multiply-add per row and k, and the softmax is done on the
accumulators before they are stored. Each output row is one sum over k in order, the
same whichever block (or thread) computes it.
"""

import numba
import numpy as np

from trainer.engine.kernels.direct_conv_kernels import stack

#: rows × columns of one register block (the literal 16 in ``stack(16, ...)`` is NB)
MB = 8
NB = 16

jit = numba.njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")


@jit
def narrow_softmax(x, W, bias, y):
    """y (n, m) = softmax(x (n, K) @ W[:, :m] + bias) over the last axis, W (K, NB)
    with zero columns from m on, n >= MB. The last row block moves back to end at the
    last row (it computes rows of the one before again, the same way). The softmax as
    Softmax.forward: max, exp of the difference, sum, divide."""
    n, K = x.shape
    m = y.shape[1]
    a0 = numba.carray(stack(16, x.dtype), (NB,))
    a1 = numba.carray(stack(16, x.dtype), (NB,))
    a2 = numba.carray(stack(16, x.dtype), (NB,))
    a3 = numba.carray(stack(16, x.dtype), (NB,))
    a4 = numba.carray(stack(16, x.dtype), (NB,))
    a5 = numba.carray(stack(16, x.dtype), (NB,))
    a6 = numba.carray(stack(16, x.dtype), (NB,))
    a7 = numba.carray(stack(16, x.dtype), (NB,))
    e = np.empty(NB, x.dtype)
    for mb in range(0, n, MB):
        m0 = min(mb, n - MB)
        for j in range(NB):
            a0[j] = 0
            a1[j] = 0
            a2[j] = 0
            a3[j] = 0
            a4[j] = 0
            a5[j] = 0
            a6[j] = 0
            a7[j] = 0
        r0, r1, r2, r3 = x[m0], x[m0 + 1], x[m0 + 2], x[m0 + 3]
        r4, r5, r6, r7 = x[m0 + 4], x[m0 + 5], x[m0 + 6], x[m0 + 7]
        for k in range(K):
            x0, x1, x2, x3 = r0[k], r1[k], r2[k], r3[k]
            x4, x5, x6, x7 = r4[k], r5[k], r6[k], r7[k]
            w = W[k]
            for j in range(NB):
                wv = w[j]
                a0[j] += x0 * wv
                a1[j] += x1 * wv
                a2[j] += x2 * wv
                a3[j] += x3 * wv
                a4[j] += x4 * wv
                a5[j] += x5 * wv
                a6[j] += x6 * wv
                a7[j] += x7 * wv
        _softmax_row(a0, bias, m, e, y[m0])
        _softmax_row(a1, bias, m, e, y[m0 + 1])
        _softmax_row(a2, bias, m, e, y[m0 + 2])
        _softmax_row(a3, bias, m, e, y[m0 + 3])
        _softmax_row(a4, bias, m, e, y[m0 + 4])
        _softmax_row(a5, bias, m, e, y[m0 + 5])
        _softmax_row(a6, bias, m, e, y[m0 + 6])
        _softmax_row(a7, bias, m, e, y[m0 + 7])


@numba.njit(cache=True, nogil=True, error_model="numpy")
def bias_softmax(z, bias, y):
    """y (n, m) = softmax(z[:, :m] + bias) over the last axis: a product's rows (a
    narrow kernel padded to more columns), its bias and softmax in one pass."""
    m = y.shape[1]
    for i in range(y.shape[0]):
        _softmax_row(z[i], bias, m, y[i], y[i])


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _softmax_row(acc, bias, m, e, out):
    """out[:m] = softmax(acc[:m] + bias); ``e`` holds the exponentials (it may be
    ``out``)."""
    top = acc[0] + bias[0]
    for j in range(1, m):
        v = acc[j] + bias[j]
        top = v if v > top else top
    total = out.dtype.type(0)
    for j in range(m):
        v = np.exp((acc[j] + bias[j]) - top)
        e[j] = v
        total += v
    for j in range(m):
        out[j] = e[j] / total
