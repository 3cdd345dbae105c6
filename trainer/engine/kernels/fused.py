"""Bias + relu, relu's backward, and the Adam and RMSprop updates, each in one pass
(Numba).

NumPy needs two passes for ``z += bias; np.maximum(z, 0, out=z)``, and its float
``maximum`` is slow (NaN handling, no wide SIMD in this build): on a 512×512 float32
block the two passes took 248 µs where one compiled loop takes 31 µs, and
``dy * (y > 0)`` (a bool array, then a casting multiply) 167 µs against 90 µs. Dense
and convolution layers run these on every batch, in each worker thread on its own
rows (the kernels release the GIL). An optimizer's NumPy update makes 9-11 passes over
each parameter (temporaries included); the compiled one reads and writes each array
once, split over the engine's threads: 4.9 → ~1 ms per step for the classic CNN.

Numbers are those of the NumPy expressions they replace, bit for bit (tests): the same
operations in the same order and precision (scalars cast to the array's dtype, as
NumPy does with a Python float), and NaN goes through relu (``max(NaN, 0)`` is NaN in
NumPy, as in Keras's backends) so that a diverging run still shows NaN. Compiled on
first use, cached on disk.

Loading Numba costs a process ~0.9 s and ~100 MB even from a warm cache, so until
something has loaded it (the pooling and recurrent kernels do), blocks under
``MIN_ELEMENTS`` (a small model's layers: the quickstart, the tiny MLP) take NumPy;
so do blocks under ``SMALL`` (a call's overhead) and arrays that are not C-contiguous
— with relu as a maximum against a zero *row*: NumPy 2.4's maximum against a
broadcast row runs 65 µs on that block, against the scalar 0 186 µs.
"""

import sys

import numpy as np

_KERNELS = None

#: arrays smaller than this go through NumPy while Numba is not loaded (module doc)
MIN_ELEMENTS = 1 << 16
#: arrays smaller than this always go through NumPy
SMALL = 1 << 12


def _compile():
    import numba

    @numba.njit(cache=True, nogil=True)
    def bias_relu(z, bias, add_bias):
        n, m = z.shape
        for i in range(n):
            row = z[i]
            for j in range(m):
                v = row[j] + bias[j] if add_bias else row[j]
                # not (v < 0): NaN stays NaN, as np.maximum(NaN, 0)
                row[j] = 0 if v < 0 else v

    @numba.njit(cache=True, nogil=True)
    def bias_only(z, bias):
        n, m = z.shape
        for i in range(n):
            row = z[i]
            for j in range(m):
                row[j] += bias[j]

    @numba.njit(cache=True, nogil=True)
    def relu_grad(dy, y, out):
        n, m = dy.shape
        for i in range(n):
            for j in range(m):
                # dy * (y > 0): a NaN/inf gradient times 0 stays NaN, as in NumPy
                out[i, j] = dy[i, j] if y[i, j] > 0 else dy[i, j] * 0

    # error_model numpy: without it Numba checks the division for zero and the loop does
    # not vectorise (Adam over 400k float32 parameters: 808 µs, 82 µs with it; same bits)
    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def adam(p, g, m, v, b1, c1, b2, c2, eps, lr_t):
        for j in range(p.size):
            gj = g[j]
            mj = m[j] * b1
            mj = mj + c1 * gj
            vj = v[j] * b2
            vj = vj + c2 * (gj * gj)
            m[j] = mj
            v[j] = vj
            p[j] = p[j] - lr_t * mj / (np.sqrt(vj) + eps)

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def rmsprop(p, g, r, rho, c, eps, lr):
        for j in range(p.size):
            gj = g[j]
            rj = r[j] * rho
            rj = rj + c * (gj * gj)
            r[j] = rj
            p[j] = p[j] - lr * gj / (np.sqrt(rj) + eps)

    return {"bias_relu": bias_relu, "bias_only": bias_only, "relu_grad": relu_grad,
            "adam": adam, "rmsprop": rmsprop}


def _kernels():
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _compile()
    return _KERNELS


def _rows(a):
    """``a`` as a 2-D C-contiguous view over its last axis, or None (NumPy's turn)."""
    if (not a.flags.c_contiguous or a.ndim == 0 or a.size < SMALL
            or (a.size < MIN_ELEMENTS and "numba" not in sys.modules)):
        return None
    return a.reshape(-1, a.shape[-1])


def _bias_act_numpy(z, bias, relu):
    """The NumPy lines: ``z += bias``, then max(z, 0) in place — against a zero row for
    blocks big enough that NumPy's scalar maximum shows (see the module doc)."""
    if bias is not None:
        z += bias
    if relu:
        zero = 0 if z.size < SMALL or z.ndim == 0 else np.zeros(z.shape[-1], z.dtype)
        np.maximum(z, zero, out=z)
    return z


def _flat(arrays):
    """The arrays as flat views when the compiled update may take them: one dtype,
    C-contiguous, one size, big enough (see ``_rows``); else None."""
    first = arrays[0]
    if any(a.dtype != first.dtype or a.shape != first.shape or not a.flags.c_contiguous
           for a in arrays) or _rows(first) is None:
        return None
    return [a.reshape(-1) for a in arrays]


def _update(kernel_name, arrays, scalars):
    """Run an elementwise update over ranges of the flat arrays on the engine's threads
    (elementwise: the split changes no number)."""
    from trainer.engine.kernels import parallel

    flat = _flat(arrays)
    if flat is None:
        return False
    kernel = _kernels()[kernel_name]  # only now: a small model never loads Numba
    cast = [flat[0].dtype.type(s) for s in scalars]
    parallel.run(lambda a, b: kernel(*[f[a:b] for f in flat], *cast), flat[0].size,
                 min_items=MIN_ELEMENTS // 2)
    return True


def adam_update(p, g, m, v, beta_1, beta_2, epsilon, lr_t):
    """Keras 2 Adam in place (without amsgrad), as ``Adam.update``'s NumPy lines;
    False (nothing done) when the arrays are not ones the kernel takes."""
    return _update("adam", (p, g, m, v),
                   (beta_1, 1 - beta_1, beta_2, 1 - beta_2, epsilon, lr_t))


def rmsprop_update(p, g, rms, rho, epsilon, lr):
    """Keras 2 RMSprop in place (not centered, no momentum), as ``RMSprop.update``'s
    NumPy lines; False (nothing done) when the arrays are not ones the kernel takes."""
    return _update("rmsprop", (p, g, rms), (rho, 1 - rho, epsilon, lr))


def bias_act(z, bias=None, relu=False):
    """In place: ``z += bias`` (if given), then relu (if asked); returns ``z``."""
    if z.size < SMALL:  # a small model's block: the NumPy lines and no more (per-call µs)
        return _bias_act_numpy(z, bias, relu)
    if bias is None and not relu:
        return z
    z2 = _rows(z)
    if z2 is None or (bias is not None and (bias.dtype != z.dtype
                                            or bias.shape != (z.shape[-1],))):
        return _bias_act_numpy(z, bias, relu)
    if relu:
        _kernels()["bias_relu"](z2, z2[0] if bias is None else bias, bias is not None)
    else:
        _kernels()["bias_only"](z2, bias)
    return z


def relu_backward(dy, y, out=None):
    """``dy * (y > 0)``, into ``out`` if given."""
    if dy.size < SMALL:
        return dy * (y > 0) if out is None else np.multiply(dy, y > 0, out=out)
    if out is None:
        out = np.empty(np.broadcast_shapes(dy.shape, y.shape), dtype=np.result_type(dy, y))
    d2, y2, o2 = _rows(dy), _rows(y), _rows(out)
    if (d2 is None or y2 is None or o2 is None or dy.shape != y.shape
            or dy.dtype != y.dtype or out.dtype != dy.dtype):
        np.multiply(dy, y > 0, out=out)
        return out
    _kernels()["relu_grad"](d2, y2, o2)
    return out
