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


#: a dense step's activation in ``chain_blocks``' ``modes``
LINEAR, RELU, SOFTMAX = 0, 1, 2
#: CBLAS's row-major layout and no-transpose flag (as trainer/engine/kernels/blas.py)
_ROW_MAJOR, _NO_TRANS = 101, 111


@numba.njit(cache=True, nogil=True, error_model="numpy")
def chain_blocks(gemm, x, kernels, widths, biases, modes, narrow, y, blocks, first, last):
    """The whole dense chain on the row blocks ``blocks[first:last]`` ((start, stop)
    rows of x and y), each block through every step before the next, with no Python
    (and no GIL) in between: ``gemm`` is OpenBLAS's cblas_sgemm (blas.sgemm), the
    steps' kernels given by address (``kernels``), step i mapping ``widths[i]`` to
    ``widths[i + 1]`` features, its bias at ``biases[sum(widths[1:i + 1]):]``,
    ``modes[i]`` = (activation, whether it has a bias). The steps before the last are
    relu or linear; the last is linear, relu or a softmax (a narrow one through
    ``narrow``, its kernel padded to NB columns; else ``narrow`` is empty). Each step
    computes what dense_chain.Dense does for the block, in the same order: the same
    bits."""
    for b in range(first, last):
        r0, r1 = blocks[b, 0], blocks[b, 1]
        _chain_block(gemm, x[r0:r1], kernels, widths, biases, modes, narrow, y[r0:r1])


@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def chain_parts(gemm, x, kernels, widths, biases, modes, narrow, y, blocks, parts):
    """``chain_blocks`` over the parts (``parts[p]`` = the first and end block of part
    p), the parts on Numba's threads: one parallel region for a whole batch, its
    threads waiting awake between calls (OpenMP) where Python's pool sleeps."""
    for p in numba.prange(parts.shape[0]):
        chain_blocks(gemm, x, kernels, widths, biases, modes, narrow, y, blocks,
                     parts[p, 0], parts[p, 1])


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _chain_block(gemm, x, kernels, widths, biases, modes, narrow, y):
    steps = kernels.shape[0]
    if steps == 1:
        _last_step(gemm, x, kernels, widths, biases, modes, narrow, y)
        return
    z = _dense_step(gemm, x, kernels, widths, biases, modes, 0)
    for i in range(1, steps - 1):
        z = _dense_step(gemm, z, kernels, widths, biases, modes, i)
    _last_step(gemm, z, kernels, widths, biases, modes, narrow, y)


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _bias_offset(widths, i):
    offset = 0
    for j in range(1, i + 1):
        offset += widths[j]
    return offset


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _product(gemm, a, kernels, widths, i, out):
    """out (n, widths[i + 1]) = a (n, widths[i]) @ step i's kernel."""
    n, k, m = a.shape[0], widths[i], widths[i + 1]
    gemm(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, n, m, k, np.float32(1), a.ctypes.data, k,
         kernels[i], m, np.float32(0), out.ctypes.data, m)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _bias_act(z, bias, relu, add_bias):
    """In place: ``z += bias`` (if ``add_bias``), then relu (if ``relu``): the
    operations of fused.bias_act's kernels (NaN stays NaN)."""
    n, m = z.shape
    for r in range(n):
        row = z[r]
        if relu:
            for j in range(m):
                v = row[j] + bias[j] if add_bias else row[j]
                row[j] = 0 if v < 0 else v
        elif add_bias:
            for j in range(m):
                row[j] += bias[j]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _dense_step(gemm, a, kernels, widths, biases, modes, i):
    """A relu or linear step before the last: its output, a new array."""
    m = widths[i + 1]
    z = np.empty((a.shape[0], m), np.float32)
    _product(gemm, a, kernels, widths, i, z)
    offset = _bias_offset(widths, i)
    _bias_act(z, biases[offset:offset + m], modes[i, 0] == RELU, modes[i, 1] != 0)
    return z


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _last_step(gemm, a, kernels, widths, biases, modes, narrow, y):
    i = kernels.shape[0] - 1
    m = widths[i + 1]
    offset = _bias_offset(widths, i)
    bias = biases[offset:offset + m]
    if modes[i, 0] != SOFTMAX:
        _product(gemm, a, kernels, widths, i, y)
        _bias_act(y, bias, modes[i, 0] == RELU, modes[i, 1] != 0)
    elif narrow.shape[0]:
        narrow_softmax(a, narrow, bias, y)
    else:
        z = np.empty((a.shape[0], m), np.float32)
        _product(gemm, a, kernels, widths, i, z)
        bias_softmax(z, bias, y)
