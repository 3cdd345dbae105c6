"""Max pooling with Numba: one pass forward (max and where it was), one scatter pass
backward. NumPy would need a compare/mask/add pass per pool offset for the backward
scatter (see ``max_pool_numpy`` in trainer/layers/pooling.py, the reference these are
tested against). Compiled on first use, cached on disk."""

import numpy as np

from trainer.engine.kernels import parallel

_KERNELS = None


def _compile():
    import numba

    # The channel axis (the contiguous one) runs innermost with the running maximum in
    # a small local array and selects instead of branches: the loop vectorizes (2.2x
    # faster than a window loop innermost, which in turn beat writing y/arg directly).
    @numba.njit(cache=True, nogil=True)
    def forward(xp, ph, pw, sh, sw, y, arg, b0, b1):
        _, ho, wo, c = y.shape
        best = np.empty(c, xp.dtype)
        where = np.empty(c, np.int32)
        for b in range(b0, b1):
            for i in range(ho):
                for j in range(wo):
                    for ch in range(c):
                        best[ch] = xp[b, i * sh, j * sw, ch]
                        where[ch] = 0
                    for p in range(ph):
                        for q in range(pw):
                            k = p * pw + q
                            for ch in range(c):
                                v = xp[b, i * sh + p, j * sw + q, ch]
                                better = v > best[ch]  # strict: the first maximum wins, as TF
                                best[ch] = v if better else best[ch]
                                where[ch] = k if better else where[ch]
                    for ch in range(c):
                        y[b, i, j, ch] = best[ch]
                        arg[b, i, j, ch] = where[ch]

    @numba.njit(cache=True, nogil=True)
    def forward_max(xp, ph, pw, sh, sw, y, b0, b1):
        """The maximum only (inference: no backward, so no argmax to keep), by the
        same comparisons as ``forward``: the same maxima. Written straight into y
        (measured 1.25-1.4x faster than ``forward`` at inference shapes)."""
        _, ho, wo, c = y.shape
        for b in range(b0, b1):
            for i in range(ho):
                for j in range(wo):
                    for ch in range(c):
                        y[b, i, j, ch] = xp[b, i * sh, j * sw, ch]
                    for p in range(ph):
                        for q in range(pw):
                            for ch in range(c):
                                v = xp[b, i * sh + p, j * sw + q, ch]
                                y[b, i, j, ch] = v if v > y[b, i, j, ch] else y[b, i, j, ch]

    @numba.njit(cache=True, nogil=True)
    def backward(dy, arg, dxp, ph, pw, sh, sw, b0, b1):
        _, ho, wo, c = dy.shape
        dxp[b0:b1] = 0
        zero = dy.dtype.type(0)
        for b in range(b0, b1):
            for i in range(ho):
                for j in range(wo):
                    for p in range(ph):
                        for q in range(pw):
                            k = p * pw + q
                            for ch in range(c):
                                # += keeps overlapping windows (strides < pool) right
                                dxp[b, i * sh + p, j * sw + q, ch] += (
                                    dy[b, i, j, ch] if arg[b, i, j, ch] == k else zero)

    return forward, backward, forward_max


def max_pool(xp, pool, strides, out_hw, training=True):
    """Max pooling of a padded NHWC array: (y, backward(dy) → dxp). The batch is
    split over the engine's threads (the kernels release the GIL). Not ``training``:
    the maximum alone, without the argmax the backward needs (a backward asked for
    anyway runs the full forward then)."""
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _compile()
    forward, backward, forward_max = _KERNELS
    (ph, pw), (sh, sw), (ho, wo) = pool, strides, out_hw
    xp = np.ascontiguousarray(xp)
    n, hp, wp, c = xp.shape
    y = np.empty((n, ho, wo, c), xp.dtype)
    if not training:
        parallel.run(lambda a, b: forward_max(xp, ph, pw, sh, sw, y, a, b), n)
        return y, lambda dy: max_pool(xp, pool, strides, out_hw)[1](dy)
    arg = np.empty((n, ho, wo, c), np.int16)
    parallel.run(lambda a, b: forward(xp, ph, pw, sh, sw, y, arg, a, b), n)

    def back(dy):
        dy = np.ascontiguousarray(dy, dtype=y.dtype)
        dxp = np.empty((n, hp, wp, c), y.dtype)
        parallel.run(lambda a, b: backward(dy, arg, dxp, ph, pw, sh, sw, a, b), n)
        return dxp

    return y, back
