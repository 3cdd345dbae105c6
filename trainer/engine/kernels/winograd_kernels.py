"""The compiled transforms of winograd_transforms.py (its module doc says what each
does and why it is written so), at module level so Numba's disk cache keeps them: the
input and gradient transforms call ``bt_b`` and ``a_at``, and jitted functions that
call another defined inside a function missed the cache and compiled again in every
process (5-7 s at a process's first Winograd convolution). Imported on first use
(``winograd_transforms.kernels``), so a model without one never loads Numba."""

import numba
import numpy as np

@numba.njit(cache=True, nogil=True, inline="always")
def bt_b(src, base, sa, V, t, c):
    """V[:, t, :] = Bᵀ d B, d[a, b] = src[base + a·sa + b] (rows of c channels)."""
    r0, r1, r2, r3 = base, base + sa, base + 2 * sa, base + 3 * sa
    for k in range(c):
        # Bᵀ d, column by column
        t00 = src[r0, k] - src[r2, k]
        t01 = src[r0 + 1, k] - src[r2 + 1, k]
        t02 = src[r0 + 2, k] - src[r2 + 2, k]
        t03 = src[r0 + 3, k] - src[r2 + 3, k]
        t10 = src[r1, k] + src[r2, k]
        t11 = src[r1 + 1, k] + src[r2 + 1, k]
        t12 = src[r1 + 2, k] + src[r2 + 2, k]
        t13 = src[r1 + 3, k] + src[r2 + 3, k]
        t20 = src[r2, k] - src[r1, k]
        t21 = src[r2 + 1, k] - src[r1 + 1, k]
        t22 = src[r2 + 2, k] - src[r1 + 2, k]
        t23 = src[r2 + 3, k] - src[r1 + 3, k]
        t30 = src[r1, k] - src[r3, k]
        t31 = src[r1 + 1, k] - src[r3 + 1, k]
        t32 = src[r1 + 2, k] - src[r3 + 2, k]
        t33 = src[r1 + 3, k] - src[r3 + 3, k]
        # (Bᵀ d) B, row by row
        V[0, t, k] = t00 - t02
        V[1, t, k] = t01 + t02
        V[2, t, k] = t02 - t01
        V[3, t, k] = t01 - t03
        V[4, t, k] = t10 - t12
        V[5, t, k] = t11 + t12
        V[6, t, k] = t12 - t11
        V[7, t, k] = t11 - t13
        V[8, t, k] = t20 - t22
        V[9, t, k] = t21 + t22
        V[10, t, k] = t22 - t21
        V[11, t, k] = t21 - t23
        V[12, t, k] = t30 - t32
        V[13, t, k] = t31 + t32
        V[14, t, k] = t32 - t31
        V[15, t, k] = t31 - t33

@numba.njit(cache=True, nogil=True)
def input_transform_at(x, n0, n1, pt, pl, th, tw, V, t0):
    """V[:, t0:t0 + tiles] (16, rows ≥ t0 + tiles, c) of samples n0:n1 of x (N, H, W,
    c); a window inside the image is read in place, one across its edge through a
    zero-filled copy."""
    _, h, w, c = x.shape
    xf = x.reshape(-1, c)
    d = np.zeros((16, c), x.dtype)
    t = t0
    for n in range(n0, n1):
        for ti in range(th):
            r0 = 2 * ti - pt
            for tj in range(tw):
                s0 = 2 * tj - pl
                if r0 >= 0 and s0 >= 0 and r0 + 4 <= h and s0 + 4 <= w:
                    bt_b(xf, (n * h + r0) * w + s0, w, V, t, c)
                else:
                    for a in range(4):
                        r = r0 + a
                        for b in range(4):
                            s = s0 + b
                            if 0 <= r < h and 0 <= s < w:
                                src = (n * h + r) * w + s
                                for k in range(c):
                                    d[a * 4 + b, k] = xf[src, k]
                            else:
                                for k in range(c):
                                    d[a * 4 + b, k] = 0
                    bt_b(d, 0, 4, V, t, c)
                t += 1

def input_transform(x, n0, n1, pt, pl, th, tw, V):
    """``input_transform_at`` from tile 0. Called from Python: a compiled caller passing
    the constant 0 made Numba compile input_transform_at a second time, for the literal
    (4.5 s of each new cache, per dtype)."""
    input_transform_at(x, n0, n1, pt, pl, th, tw, V, 0)

@numba.njit(cache=True, nogil=True)
def output_transform(M, n0, n1, th, tw, z, bias, relu):
    """z[n, 2i:2i+2, 2j:2j+2] = Aᵀ m A + bias (relu if asked) of tile t's 16
    products; the half of a tile past an odd-sized output is not written."""
    _, ho, wo, kk = z.shape
    zero = np.zeros(1, z.dtype)[0]
    zf = z.reshape(-1, kk)
    out = np.empty((4, kk), z.dtype)
    t = 0
    for n in range(n0, n1):
        for ti in range(th):
            for tj in range(tw):
                for k in range(kk):
                    # Aᵀ m, column by column
                    s00 = M[0, t, k] + M[4, t, k] + M[8, t, k]
                    s01 = M[1, t, k] + M[5, t, k] + M[9, t, k]
                    s02 = M[2, t, k] + M[6, t, k] + M[10, t, k]
                    s03 = M[3, t, k] + M[7, t, k] + M[11, t, k]
                    s10 = M[4, t, k] - M[8, t, k] - M[12, t, k]
                    s11 = M[5, t, k] - M[9, t, k] - M[13, t, k]
                    s12 = M[6, t, k] - M[10, t, k] - M[14, t, k]
                    s13 = M[7, t, k] - M[11, t, k] - M[15, t, k]
                    b = bias[k]
                    v0 = s00 + s01 + s02 + b
                    v1 = s01 - s02 - s03 + b
                    v2 = s10 + s11 + s12 + b
                    v3 = s11 - s12 - s13 + b
                    if relu:  # not (v < 0): NaN stays NaN, as fused.bias_act
                        v0 = zero if v0 < 0 else v0
                        v1 = zero if v1 < 0 else v1
                        v2 = zero if v2 < 0 else v2
                        v3 = zero if v3 < 0 else v3
                    out[0, k] = v0
                    out[1, k] = v1
                    out[2, k] = v2
                    out[3, k] = v3
                for q in range(4):
                    i = 2 * ti + q // 2
                    j = 2 * tj + q % 2
                    if i < ho and j < wo:
                        dst = (n * ho + i) * wo + j
                        for k in range(kk):
                            zf[dst, k] = out[q, k]
                t += 1

@numba.njit(cache=True, nogil=True, inline="always")
def a_at(src, base, sa, D, t, kk):
    """D[:, t, :] = A g Aᵀ, g[a, b] = src[base + a·sa + b]."""
    for k in range(kk):
        g00 = src[base, k]
        g01 = src[base + 1, k]
        g10 = src[base + sa, k]
        g11 = src[base + sa + 1, k]
        # A g, rows: g0, g0 + g1, g0 - g1, -g1; then (A g) Aᵀ the same on columns
        u10, u11 = g00 + g10, g01 + g11
        u20, u21 = g00 - g10, g01 - g11
        D[0, t, k] = g00
        D[1, t, k] = g00 + g01
        D[2, t, k] = g00 - g01
        D[3, t, k] = -g01
        D[4, t, k] = u10
        D[5, t, k] = u10 + u11
        D[6, t, k] = u10 - u11
        D[7, t, k] = -u11
        D[8, t, k] = u20
        D[9, t, k] = u20 + u21
        D[10, t, k] = u20 - u21
        D[11, t, k] = -u21
        D[12, t, k] = -g10
        D[13, t, k] = -g10 - g11
        D[14, t, k] = g11 - g10
        D[15, t, k] = g11

@numba.njit(cache=True, nogil=True)
def grad_transform_at(dz, n0, n1, th, tw, D, t0):
    """D[:, t0:t0 + tiles] (16, rows ≥ t0 + tiles, k) of samples n0:n1 of the output
    gradient dz (N, Ho, Wo, k)."""
    _, ho, wo, kk = dz.shape
    df = dz.reshape(-1, kk)
    g = np.zeros((4, kk), dz.dtype)
    t = t0
    for n in range(n0, n1):
        for ti in range(th):
            i0 = 2 * ti
            for tj in range(tw):
                j0 = 2 * tj
                if i0 + 2 <= ho and j0 + 2 <= wo:
                    a_at(df, (n * ho + i0) * wo + j0, wo, D, t, kk)
                else:
                    for a in range(2):
                        for b in range(2):
                            if i0 + a < ho and j0 + b < wo:
                                src = (n * ho + i0 + a) * wo + j0 + b
                                for k in range(kk):
                                    g[a * 2 + b, k] = df[src, k]
                            else:
                                for k in range(kk):
                                    g[a * 2 + b, k] = 0
                    a_at(g, 0, 2, D, t, kk)
                t += 1

def grad_transform(dz, n0, n1, th, tw, D):
    """``grad_transform_at`` from tile 0, called from Python (see ``input_transform``)."""
    grad_transform_at(dz, n0, n1, th, tw, D, 0)

@numba.njit(cache=True, nogil=True)
def kernel_transform(W, c0, c1, U):
    """U[:, c0:c1] (16, C, K) = G g Gᵀ of each 3×3 kernel g = W[:, :, c, k] of
    input channels c0:c1 (G's entries are 1, 0 and ±0.5). One row of G g at a
    time over all filters (4 output slabs written per pass: measured 6× faster at
    512×512 than writing all 16 per filter, whose rows lie whole slabs apart)."""
    kk = W.shape[3]
    half = W.dtype.type(0.5)
    for c in range(c0, c1):
        for i in range(4):
            for k in range(kk):
                # row i of G g: g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2
                if i == 0:
                    a, b, d = W[0, 0, c, k], W[0, 1, c, k], W[0, 2, c, k]
                elif i == 3:
                    a, b, d = W[2, 0, c, k], W[2, 1, c, k], W[2, 2, c, k]
                elif i == 1:
                    a = half * (W[0, 0, c, k] + W[1, 0, c, k] + W[2, 0, c, k])
                    b = half * (W[0, 1, c, k] + W[1, 1, c, k] + W[2, 1, c, k])
                    d = half * (W[0, 2, c, k] + W[1, 2, c, k] + W[2, 2, c, k])
                else:
                    a = half * (W[0, 0, c, k] - W[1, 0, c, k] + W[2, 0, c, k])
                    b = half * (W[0, 1, c, k] - W[1, 1, c, k] + W[2, 1, c, k])
                    d = half * (W[0, 2, c, k] - W[1, 2, c, k] + W[2, 2, c, k])
                # (G g) Gᵀ on the row: a, (a + b + d) / 2, (a - b + d) / 2, d
                U[4 * i, c, k] = a
                U[4 * i + 1, c, k] = half * (a + b + d)
                U[4 * i + 2, c, k] = half * (a - b + d)
                U[4 * i + 3, c, k] = d

@numba.njit(cache=True, nogil=True)
def kernel_gradient(dU, c0, c1, dW):
    """dW[:, :, c0:c1] (3, 3, C, K) = Gᵀ dU G of the (4×4) gradient of each
    transformed kernel, dU (16, C, K); a row at a time as ``kernel_transform``."""
    kk = dU.shape[2]
    half = dU.dtype.type(0.5)
    for c in range(c0, c1):
        for i in range(3):
            for k in range(kk):
                # row i of Gᵀ d: d0 + (d1 + d2) / 2, (d1 - d2) / 2, (d1 + d2) / 2 + d3
                if i == 0:
                    r0 = dU[0, c, k] + half * (dU[4, c, k] + dU[8, c, k])
                    r1 = dU[1, c, k] + half * (dU[5, c, k] + dU[9, c, k])
                    r2 = dU[2, c, k] + half * (dU[6, c, k] + dU[10, c, k])
                    r3 = dU[3, c, k] + half * (dU[7, c, k] + dU[11, c, k])
                elif i == 1:
                    r0 = half * (dU[4, c, k] - dU[8, c, k])
                    r1 = half * (dU[5, c, k] - dU[9, c, k])
                    r2 = half * (dU[6, c, k] - dU[10, c, k])
                    r3 = half * (dU[7, c, k] - dU[11, c, k])
                else:
                    r0 = half * (dU[4, c, k] + dU[8, c, k]) + dU[12, c, k]
                    r1 = half * (dU[5, c, k] + dU[9, c, k]) + dU[13, c, k]
                    r2 = half * (dU[6, c, k] + dU[10, c, k]) + dU[14, c, k]
                    r3 = half * (dU[7, c, k] + dU[11, c, k]) + dU[15, c, k]
                # (Gᵀ d) G on the row
                dW[i, 0, c, k] = r0 + half * (r1 + r2)
                dW[i, 1, c, k] = half * (r1 - r2)
                dW[i, 2, c, k] = half * (r1 + r2) + r3


KERNELS = {"input": input_transform, "input_at": input_transform_at,
        "output": output_transform, "grad": grad_transform, "grad_at": grad_transform_at,
        "kernel": kernel_transform, "kernel_grad": kernel_gradient}
