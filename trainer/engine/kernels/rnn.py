"""Numba kernels for one LSTM time step: the gate nonlinearities, the cell update and
the mask, fused in one pass over ``(batch, units)`` — forward and backward side by side.

The matrix products stay in NumPy's BLAS (``rnn_cells.py``); these kernels replace
the dozen elementwise NumPy passes (each a fresh array) a step otherwise costs. They
cover the usual activations: ``activation`` tanh and ``recurrent_activation`` sigmoid
(code 0) or hard_sigmoid (code 1); other activations take the NumPy path. Imported
lazily (first LSTM call), compiled once and cached on disk.

tanh in float32 is the rational approximation Eigen (and so PyTorch's CPU kernels)
uses, accurate to a few ulp and ~7x faster than libm's scalar tanh here; float64 (the
gradient checks) calls libm's exact tanh.
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

SIGMOID, HARD_SIGMOID = 0, 1

_f = np.float32
_TANH_CLAMP = _f(7.90531110763549805)
_TANH_P = tuple(_f(v) for v in (-2.76076847742355e-16, 2.00018790482477e-13,
                                -8.60467152213735e-11, 5.12229709037114e-08,
                                1.48572235717979e-05, 6.37261928875436e-04,
                                4.89352455891786e-03))
_TANH_Q = tuple(_f(v) for v in (1.19825839466702e-06, 1.18534705686654e-04,
                                2.26843463243900e-03, 4.89352518554385e-03))
_HALF = _f(0.5)


def tanh(x):
    """tanh; float32 by Eigen's rational approximation (see module doc)."""
    return math.tanh(x)


@overload(tanh)
def _tanh_impl(x):
    if x != types.float32:
        return lambda x: math.tanh(x)
    p0, p1, p2, p3, p4, p5, p6 = _TANH_P
    q0, q1, q2, q3 = _TANH_Q
    lim = _TANH_CLAMP

    def impl(x):
        v = min(max(x, -lim), lim)
        v2 = v * v
        p = ((((((p0 * v2 + p1) * v2 + p2) * v2 + p3) * v2 + p4) * v2 + p5) * v2 + p6) * v
        q = ((q0 * v2 + q1) * v2 + q2) * v2 + q3
        return p / q
    return impl


@njit(cache=True, fastmath=True, nogil=True)
def _ract(x, code):
    if code == SIGMOID:
        h = x * _HALF
        return tanh(h) * _HALF + _HALF
    return min(max(0.2 * x + 0.5, 0.0), 1.0)


@njit(cache=True, nogil=True)
def _dract(x, y, code):
    if code == SIGMOID:
        return y * (1.0 - y)
    return 0.2 if -2.5 < x < 2.5 else 0.0


@njit(cache=True, fastmath=True, nogil=True)
def _gates(z, xp_t, g, lo, hi, code, cell):
    """z[:, lo:hi] += xp_t; g = tanh (cell gate) or the recurrent activation of it.
    One simple loop per gate range, so LLVM vectorises it."""
    for b in range(z.shape[0]):
        for j in range(lo, hi):
            v = z[b, j] + xp_t[b, j]
            z[b, j] = v
            g[b, j] = tanh(v) if cell else _ract(v, code)


@njit(cache=True, fastmath=True, nogil=True)
def lstm_step_forward(z, xp_t, h, c, m, code, g, cn, ac, h_out, c_out):
    """z (B, 4U) holds h_prev @ U on entry and the gate pre-activations on exit;
    m (B,) is the step's mask (ones when there is none)."""
    B, U = h.shape
    _gates(z, xp_t, g, 0, 2 * U, code, False)
    _gates(z, xp_t, g, 2 * U, 3 * U, code, True)
    _gates(z, xp_t, g, 3 * U, 4 * U, code, False)
    for b in range(B):
        keep = m[b]
        for j in range(U):
            c_new = g[b, U + j] * c[b, j] + g[b, j] * g[b, 2 * U + j]
            a = tanh(c_new)
            cn[b, j] = c_new
            ac[b, j] = a
            h_new = g[b, 3 * U + j] * a
            h_out[b, j] = h[b, j] + keep * (h_new - h[b, j])
            c_out[b, j] = c[b, j] + keep * (c_new - c[b, j])


@njit(cache=True, nogil=True)
def lstm_step_backward(dh, dc, z, g, cn, ac, c_prev, m, code, dz, dc_out, dh_keep):
    """Gradients of one step: dz (B, 4U) of the gate pre-activations, dc_out of the
    previous cell, dh_keep the part of dh a masked step hands straight back."""
    B, U = dh.shape
    for b in range(B):
        keep = m[b]
        for j in range(U):
            dhn = dh[b, j] * keep
            dcn = dc[b, j] * keep
            i, f, gc, o = g[b, j], g[b, U + j], g[b, 2 * U + j], g[b, 3 * U + j]
            a = ac[b, j]
            dcn += dhn * o * (1.0 - a * a)
            dz[b, j] = dcn * gc * _dract(z[b, j], i, code)
            dz[b, U + j] = dcn * c_prev[b, j] * _dract(z[b, U + j], f, code)
            dz[b, 2 * U + j] = dcn * i * (1.0 - gc * gc)
            dz[b, 3 * U + j] = dhn * a * _dract(z[b, 3 * U + j], o, code)
            dc_out[b, j] = dcn * f + (dc[b, j] - dc[b, j] * keep)
            dh_keep[b, j] = dh[b, j] - dhn


def fused_code(act, ract):
    """The kernel's code for these activations, or None when the NumPy path must run."""
    if getattr(act, "registered_name", None) != "tanh":
        return None
    return {"sigmoid": SIGMOID, "hard_sigmoid": HARD_SIGMOID}.get(
        getattr(ract, "registered_name", None))


def no_mask(batch, dtype):
    """The mask of a step without one."""
    return np.ones(batch, dtype)
