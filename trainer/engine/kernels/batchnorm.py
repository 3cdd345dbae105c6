"""BatchNormalization while training, in four compiled passes (Numba): per-feature
sums of the input, the output ``(x - mean)·a + b`` (with an Add's other input and a
relu fused in), per-feature sums of the gradient, then ``dx``.

The input is a C-contiguous ``(rows, features)`` view (the features the last axis,
channels last). Sums run in float64 accumulators, one set per part of the rows
(``parallel.run``: parts fixed by the shape, never the thread count), added in part
order, so a result is the same on any number of threads.

Statistics: one pass of ``Σ(x - k)`` and ``Σ(x - k)²`` with a per-feature shift ``k``
(the first row's values in one process; the mean of a first pass when the batch is
split over MPI ranks, whose shifts would differ), then ``mean = k + Σ(x-k)/n`` and
``var = Σ(x-k)²/n - (Σ(x-k)/n)²``. With ``k`` a value of the data, ``|mean - k|`` is a
few standard deviations, so the subtraction loses nothing a float32 result keeps.

Gradients, with ``d`` the gradient arriving (``dy``, masked by ``y > 0`` under a
fused relu) and ``S0 = Σd``, ``S1 = Σd·(x - mean)``: ``dbeta = S0``,
``dgamma = inv_std·S1`` and ``dx = p·d + q·(x - mean) + r`` with ``p = gamma·inv_std``,
``q = -gamma·inv_std³·S1/n``, ``r = -gamma·inv_std·S0/n`` — the closed form
``(dx̂ - mean(dx̂) - x̂·mean(dx̂·x̂))·inv_std``, per-feature coefficients in float64.
Compiled on first use, cached on disk.
"""

import numpy as np

from trainer.engine.kernels import parallel

_KERNELS = None

#: the fewest values a part of a pass covers (smaller work runs in one part)
PART_VALUES = 1 << 15


def _compile():
    import numba

    opts = dict(cache=True, nogil=True, error_model="numpy")

    # Four rows per step into local float64 accumulators: a quarter of the
    # accumulators' loads and stores (the loop was bound by them where the block sits
    # in cache: 7×7×2048 2.1x, 56×56×64 1.8x faster on one thread), the same order of
    # additions on any thread count.
    @numba.njit(**opts)
    def sums(x, shift, out):
        """out[0] += Σ (x - shift), out[1] += Σ (x - shift)² over the rows, float64."""
        n, c = x.shape
        s1 = np.zeros(c)
        s2 = np.zeros(c)
        n4 = n - n % 4
        for i in range(0, n4, 4):
            r0, r1, r2, r3 = x[i], x[i + 1], x[i + 2], x[i + 3]
            for j in range(c):
                k = shift[j]
                d0 = np.float64(r0[j]) - k
                d1 = np.float64(r1[j]) - k
                d2 = np.float64(r2[j]) - k
                d3 = np.float64(r3[j]) - k
                s1[j] += (d0 + d1) + (d2 + d3)
                s2[j] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)
        for i in range(n4, n):
            row = x[i]
            for j in range(c):
                d = np.float64(row[j]) - shift[j]
                s1[j] += d
                s2[j] += d * d
        out[0, :] += s1
        out[1, :] += s2

    @numba.njit(**opts)
    def normalize(x, hi, a, b, other, add, relu, y):
        """y = (x - hi)·a + b (+ other) (then max(·, 0), NaN kept), in x's dtype: hi
        the mean rounded to x's dtype, b holding the rest (see ``_split``)."""
        n, c = x.shape
        for i in range(n):
            xi = x[i]
            yi = y[i]
            oi = other[i] if add else xi
            for j in range(c):
                v = (xi[j] - hi[j]) * a[j] + b[j]
                if add:
                    v = v + oi[j]
                if relu:
                    v = 0 if v < 0 else v  # not (v < 0): NaN stays NaN, as np.maximum
                yi[j] = v

    @numba.njit(**opts)
    def masked(g, y, relu):
        # dy·(y > 0) as fused.relu_grad: a NaN or inf dy times 0 stays NaN
        return (g if y > 0 else g * 0) if relu else g

    @numba.njit(**opts)
    def grad_sums(dy, y, relu, x, mean, out, d_out, keep_d):
        """out[0] += Σ d, out[1] += Σ d·(x - mean), float64, d = dy·(y > 0) under
        relu, else dy; d written to d_out when ``keep_d``."""
        n, c = x.shape
        s0 = np.zeros(c)
        s1 = np.zeros(c)
        for i in range(n):
            dyi, yi, xi, di = dy[i], y[i], x[i], d_out[i if keep_d else 0]
            for j in range(c):
                g = masked(dyi[j], yi[j], relu)
                if keep_d:
                    di[j] = g
                e = np.float64(g)
                s0[j] += e
                s1[j] += e * (np.float64(xi[j]) - mean[j])
        out[0, :] += s0
        out[1, :] += s1

    @numba.njit(**opts)
    def grad_apply(dy, y, relu, x, hi, p, q, r, dx):
        """dx = p·d + q·(x - hi) + r, d as in grad_sums, in x's dtype (hi and r as
        in ``normalize``)."""
        n, c = x.shape
        for i in range(n):
            dyi = dy[i]
            yi = y[i]
            xi = x[i]
            dxi = dx[i]
            for j in range(c):
                g = masked(dyi[j], yi[j], relu)
                dxi[j] = p[j] * g + q[j] * (xi[j] - hi[j]) + r[j]

    return {"sums": sums, "normalize": normalize, "grad_sums": grad_sums,
            "grad_apply": grad_apply}


def _kernels():
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _compile()
    return _KERNELS


def _min_rows(c):
    return max(1, PART_VALUES // max(c, 1))


def moments(x, shift):
    """(Σ(x - shift), Σ(x - shift)²) per feature of a (rows, features) array, float64."""
    rows, c = x.shape
    sums = _kernels()["sums"]
    shift = np.ascontiguousarray(shift, np.float64)

    def part(s, e):
        out = np.zeros((2, c), np.float64)
        sums(x[s:e], shift, out)
        return out

    return _ordered_sum(parallel.run(part, rows, min_items=_min_rows(c)))


def _ordered_sum(parts):
    total = parts[0]
    for p in parts[1:]:
        total += p
    return total


def _split(mean, dtype, a, b):
    """``(x - mean)·a + b`` as ``(x - hi)·a + (b - (mean - hi)·a)``: ``hi`` the float64
    ``mean`` rounded to ``dtype`` (``x - hi`` exact near the mean), the rounding's rest
    in the per-feature constant (in float64, then rounded once). The centred value
    keeps its accuracy where a rounded mean would not: a mean 1000 standard
    deviations from zero gave float32 errors of 1.2e-5 with the rounded mean alone,
    1.2e-7 so. Returns hi, a, b' in ``dtype``."""
    mean = np.asarray(mean, np.float64)
    hi = np.ascontiguousarray(mean, dtype)
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64) - (mean - hi.astype(np.float64)) * a
    return hi, np.ascontiguousarray(a, dtype), np.ascontiguousarray(b, dtype)


def normalize(x, mean, a, b, other=None, relu=False, out=None):
    """``(x - mean)·a + b`` (``+ other``, then relu) of a (rows, features) array,
    per-feature float64 ``mean``, ``a``, ``b`` (the last two cast to x's dtype); into
    ``out`` (new if None)."""
    rows, c = x.shape
    dt = x.dtype
    hi, a, b = _split(mean, dt, a, b)
    y = np.empty_like(x) if out is None else out
    kernel = _kernels()["normalize"]
    add = other is not None
    o = other if add else x
    parallel.run(lambda s, e: kernel(x[s:e], hi, a, b, o[s:e], add, relu, y[s:e]),
                 rows, min_items=_min_rows(c))
    return y


def gradient_sums(dy, x, mean, y=None, keep_d=False):
    """(Σd, Σd·(x - mean)) per feature, float64, with d = dy·(y > 0) when ``y`` is
    given (a fused relu's output), else dy; and d as an array when ``keep_d`` (else
    None)."""
    rows, c = x.shape
    relu = y is not None
    kernel = _kernels()["grad_sums"]
    mean = np.ascontiguousarray(mean, np.float64)
    d = np.empty_like(dy) if keep_d else dy[:1]
    yy = y if relu else dy

    def part(s, e):
        out = np.zeros((2, c), np.float64)
        kernel(dy[s:e], yy[s:e], relu, x[s:e], mean, out, d[s:e] if keep_d else d,
               keep_d)
        return out

    total = _ordered_sum(parallel.run(part, rows, min_items=_min_rows(c)))
    return total, (d if keep_d else None)


def gradient_apply(dy, x, mean, p, q, r, y=None):
    """``p·d + q·(x - mean) + r`` per feature (cast to x's dtype), d as in
    ``gradient_sums``; a new array."""
    rows, c = x.shape
    dt = x.dtype
    relu = y is not None
    hi, q, r = _split(mean, dt, q, r)
    p = np.ascontiguousarray(p, dt)
    dx = np.empty_like(x)
    kernel = _kernels()["grad_apply"]
    yy = y if relu else dy
    parallel.run(lambda s, e: kernel(dy[s:e], yy[s:e], relu, x[s:e], hi, p, q, r,
                                     dx[s:e]),
                 rows, min_items=_min_rows(c))
    return dx
