"""A GEMM of our own for the dense chain at inference (trainer/engine/kernels/
dense_chain.py, whose doc says when it runs): ``out = max(lo, A @ W + bias)`` with W
packed once into panels of NB columns (``pack``) and a register block of MB rows × NB
columns: 8 × 32 float32 = 16 zmm accumulators under AVX-512, kept in registers
through the whole K (no spills in the inner loop: 8 broadcasts, 2 loads, 16
vfmadd231ps), bias and relu as the block's epilogue. A module of its own
(module-level functions cache on disk).

No K blocking: at the MLP's shapes (K 512 and 784) cutting K in blocks of 256 or 196
(a packed panel's slice in L1) ran 10-20% slower than a whole panel (K × 128 bytes, in
L2) per block: the partial sums went out and back through memory once per K block.
Each output is one sum over k in order, the same on any thread count."""

import numba
import numpy as np

from trainer.engine.kernels.direct_conv_kernels import stack

#: rows × columns of one register block (the literal 32 in ``stack(32, ...)`` is NB)
MB = 8
NB = 32

jit = numba.njit(cache=True, nogil=True, fastmath={"contract"})


def pack(W):
    """W (K, N), N >= NB, as panels (P, K, NB) of NB columns each, and the first
    column of each panel; the last panel moved back to end at the last column (it
    overlaps the one before: both compute the shared columns in the same order)."""
    K, N = W.shape
    if N < NB:
        raise ValueError(f"pack: expected at least {NB} columns, got {N}")
    starts = np.minimum(np.arange(0, N, NB), N - NB).astype(np.int64)
    panels = np.empty((len(starts), K, NB), W.dtype)
    for p, c in enumerate(starts):
        panels[p] = W[:, c:c + NB]
    return panels, starts


@jit
def gemm_bias_act(A, panels, starts, bias, lo, out):
    """out (M, N) = max(lo, A (M, K) @ W + bias) with W as ``pack`` gives it; M >= MB.
    The last row block moves back to end at the last row (it recomputes rows of the
    one before, the same way). lo = -inf: no relu; NaN kept either way."""
    M, K = A.shape
    P = panels.shape[0]
    a0 = numba.carray(stack(32, A.dtype), (NB,))
    a1 = numba.carray(stack(32, A.dtype), (NB,))
    a2 = numba.carray(stack(32, A.dtype), (NB,))
    a3 = numba.carray(stack(32, A.dtype), (NB,))
    a4 = numba.carray(stack(32, A.dtype), (NB,))
    a5 = numba.carray(stack(32, A.dtype), (NB,))
    a6 = numba.carray(stack(32, A.dtype), (NB,))
    a7 = numba.carray(stack(32, A.dtype), (NB,))
    for p in range(P):
        c0 = starts[p]
        Bp = panels[p]
        for mb in range(0, M, MB):
            m0 = max(min(mb, M - MB), 0)
            for j in range(NB):
                a0[j] = 0
                a1[j] = 0
                a2[j] = 0
                a3[j] = 0
                a4[j] = 0
                a5[j] = 0
                a6[j] = 0
                a7[j] = 0
            # row views: the loop's index runs from 0 (no negative-index test in it)
            r0, r1, r2, r3 = A[m0], A[m0 + 1], A[m0 + 2], A[m0 + 3]
            r4, r5, r6, r7 = A[m0 + 4], A[m0 + 5], A[m0 + 6], A[m0 + 7]
            for k in range(K):
                x0, x1, x2, x3 = r0[k], r1[k], r2[k], r3[k]
                x4, x5, x6, x7 = r4[k], r5[k], r6[k], r7[k]
                w = Bp[k]
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
            for j in range(NB):
                bv = bias[c0 + j]
                v = a0[j] + bv
                out[m0, c0 + j] = lo if v < lo else v
                v = a1[j] + bv
                out[m0 + 1, c0 + j] = lo if v < lo else v
                v = a2[j] + bv
                out[m0 + 2, c0 + j] = lo if v < lo else v
                v = a3[j] + bv
                out[m0 + 3, c0 + j] = lo if v < lo else v
                v = a4[j] + bv
                out[m0 + 4, c0 + j] = lo if v < lo else v
                v = a5[j] + bv
                out[m0 + 5, c0 + j] = lo if v < lo else v
                v = a6[j] + bv
                out[m0 + 6, c0 + j] = lo if v < lo else v
                v = a7[j] + bv
                out[m0 + 7, c0 + j] = lo if v < lo else v
