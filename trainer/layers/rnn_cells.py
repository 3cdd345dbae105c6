"""The time loops of SimpleRNN, LSTM and GRU, forward and backward side by side.

Each loop runs over time steps only: every step is a few matrix products and
elementwise operations over the whole batch. The input projections ``xp = x @ kernel
(+ bias)`` of all steps are computed before (one GEMM, in ``recurrent.py``) and come in
as ``xp (T, B, gates*units)``; the gradient of the recurrent kernel is one GEMM after
the backward loop over the stacked step inputs (``rnn_products.weight_gradient``,
split over the engine's threads by columns).

Conventions (Keras 2 formulas and weight layouts):
- ``mask (T, B, 1)`` float, 1 where a step is real, 0 where it is padding: a masked step
  keeps every state and outputs the previous output (``h = h_prev + m * (h_new - h_prev)``).
- ``rmask (B, units)``: the recurrent dropout mask (already scaled), or None; it
  multiplies ``h_prev`` where ``h_prev`` enters a matrix product.
- ``forward`` returns ``(H (T, B, units), final states, cache)``; ``backward(cache, dH,
  dfinal)`` takes the gradient of the output sequence (or None) and of the final states
  (list, entries may be None) and returns ``(dxp, weight grads dict, dstates0)``.
"""

import numpy as np

from trainer.engine.kernels import parallel, rnn_products


class _TanhSigmoid:
    """sigmoid as 0.5 * tanh(x / 2) + 0.5: the same function, stable for any x, and a
    few times faster than a masked exp on the small arrays of one step."""

    registered_name = "sigmoid"

    def forward(self, x):
        y = np.tanh(x * x.dtype.type(0.5))
        y *= x.dtype.type(0.5)
        y += x.dtype.type(0.5)
        return y

    def backward(self, x, y, dy):
        return dy * y * (1 - y)


def _fast(a):
    return _TanhSigmoid() if getattr(a, "registered_name", None) == "sigmoid" else a


def _step_in(h, rmask):
    return h if rmask is None else h * rmask


def _carry(h_prev, h_new, m):
    """A masked step keeps the previous value."""
    if m is None:
        return h_new
    return h_prev + m * (h_new - h_prev)


def _split(d, m):
    """Gradient of a carried value: the part through the new value, the part kept."""
    if m is None:
        return d, None
    dn = d * m
    return dn, d - dn


def _acc(d, carry):
    return d if carry is None else d + carry


def _final(d, like):
    return np.zeros_like(like) if d is None else d.copy()


# -- SimpleRNN: h = act(xp + h_prev @ U) ------------------------------------------
def simple_forward(xp, U, states, mask, rmask, act, **_):
    (h,) = states
    act = _fast(act)
    T = len(xp)
    Z = np.empty_like(xp)
    A = np.empty_like(xp)
    Hin = np.empty((T,) + h.shape, xp.dtype)
    H = np.empty_like(Hin)
    for t in range(T):
        hr = _step_in(h, rmask)
        Hin[t] = hr
        np.matmul(hr, U, out=Z[t])
        Z[t] += xp[t]
        A[t] = act.forward(Z[t])
        h = _carry(h, A[t], None if mask is None else mask[t])
        H[t] = h
    return H, [h], (Z, A, Hin, U, mask, rmask, act)


def simple_backward(cache, dH, dfinal):
    Z, A, Hin, U, mask, rmask, act = cache
    dh = _final(dfinal[0], Hin[0])
    dZ = np.empty_like(Z)
    for t in range(len(Z) - 1, -1, -1):
        if dH is not None:
            dh += dH[t]
        dhn, keep = _split(dh, None if mask is None else mask[t])
        dZ[t] = act.backward(Z[t], A[t], dhn)
        dh = dZ[t] @ U.T
        if rmask is not None:
            dh *= rmask
        dh = _acc(dh, keep)
    u = U.shape[0]
    dU = rnn_products.weight_gradient(Hin.reshape(-1, u), dZ.reshape(-1, u))
    return dZ, {"recurrent_kernel": dU}, [dh]


# -- LSTM: gates i, f, c, o ---------------------------------------------------------
def _fused(act, ract):
    """The Numba step kernels when they cover these activations (imported lazily)."""
    from trainer.engine.kernels import rnn as rnn_kernels

    code = rnn_kernels.fused_code(act, ract)
    return None if code is None else (rnn_kernels, code)


def lstm_forward(xp, U, states, mask, rmask, act, ract, **_):
    h0, c0 = states
    T, u = len(xp), U.shape[0]
    Z = np.empty_like(xp)       # pre-activations of the gates
    G = np.empty_like(xp)       # i, f, g(=c~), o
    Hs = np.empty((T + 1,) + h0.shape, xp.dtype)  # h_0 .. h_T (after masking)
    Cs = np.empty_like(Hs)                         # c_0 .. c_T
    Hs[0], Cs[0] = h0, c0
    Hin = Hs[:-1] if rmask is None else np.empty_like(Hs[1:])  # what meets U
    Cn = np.empty_like(Hs[1:])  # new cell before masking
    AC = np.empty_like(Cn)      # act(Cn)
    fused = _fused(act, ract)
    act, ract = _fast(act), _fast(ract)
    if fused is not None:
        kernels, code = fused
        ones = kernels.no_mask(len(h0), xp.dtype)

        def rows(a, b):
            """The whole time loop for batch rows a:b (samples never interact)."""
            for t in range(T):
                h, c = Hs[t, a:b], Cs[t, a:b]
                hr = h
                if rmask is not None:
                    hr = Hin[t, a:b]
                    np.multiply(h, rmask[a:b], out=hr)
                np.matmul(hr, U, out=Z[t, a:b])
                m = ones[a:b] if mask is None else mask[t, a:b, 0]
                kernels.lstm_step_forward(Z[t, a:b], xp[t, a:b], h, c, m, code, G[t, a:b],
                                          Cn[t, a:b], AC[t, a:b], Hs[t + 1, a:b],
                                          Cs[t + 1, a:b])

        parallel.run(rows, len(h0), min_items=8)
        cache = (Z, G, Hin, Cs[:-1], Cn, AC, U, mask, rmask, act, ract, fused)
        return Hs[1:], [Hs[T], Cs[T]], cache
    for t in range(T):
        h, c = Hs[t], Cs[t]
        hr = h
        if rmask is not None:
            hr = Hin[t]
            np.multiply(h, rmask, out=hr)
        z = Z[t]
        np.matmul(hr, U, out=z)
        m = None if mask is None else mask[t]
        z += xp[t]
        g = G[t]
        g[:, :2 * u] = ract.forward(z[:, :2 * u])
        g[:, 2 * u:3 * u] = act.forward(z[:, 2 * u:3 * u])
        g[:, 3 * u:] = ract.forward(z[:, 3 * u:])
        cn = Cn[t]
        np.multiply(g[:, u:2 * u], c, out=cn)
        cn += g[:, :u] * g[:, 2 * u:3 * u]
        AC[t] = act.forward(cn)
        hn = g[:, 3 * u:] * AC[t]
        Hs[t + 1] = _carry(h, hn, m)
        Cs[t + 1] = _carry(c, cn, m)
    cache = (Z, G, Hin, Cs[:-1], Cn, AC, U, mask, rmask, act, ract, fused)
    return Hs[1:], [Hs[T], Cs[T]], cache


def lstm_backward(cache, dH, dfinal):
    Z, G, Hin, Cprev, Cn, AC, U, mask, rmask, act, ract, fused = cache
    u = U.shape[0]
    dh = _final(dfinal[0], Hin[0])
    dc = _final(dfinal[1], Hin[0])
    dZ = np.empty_like(Z)
    UT = np.ascontiguousarray(U.T)
    if fused is not None:
        kernels, code = fused
        keep_h, dc_next = np.empty_like(dh), np.empty_like(dc)
        ones = kernels.no_mask(len(dh), dh.dtype)

        def rows(a, b):
            """The whole backward time loop for batch rows a:b."""
            h_grad, c_grad, c_next = dh[a:b], dc[a:b], dc_next[a:b]
            keep = keep_h[a:b]
            for t in range(len(Z) - 1, -1, -1):
                if dH is not None:
                    h_grad += dH[t, a:b]
                m = ones[a:b] if mask is None else mask[t, a:b, 0]
                kernels.lstm_step_backward(h_grad, c_grad, Z[t, a:b], G[t, a:b], Cn[t, a:b],
                                           AC[t, a:b], Cprev[t, a:b], m, code, dZ[t, a:b],
                                           c_next, keep)
                c_grad, c_next = c_next, c_grad
                np.matmul(dZ[t, a:b], UT, out=h_grad)
                if rmask is not None:
                    h_grad *= rmask[a:b]
                if mask is not None:
                    h_grad += keep
            return c_grad

        parts = parallel.run(rows, len(dh), min_items=8)
        dc = np.concatenate(parts)  # each slice's final cell gradient (buffers swap)
        dU = rnn_products.weight_gradient(Hin.reshape(-1, u), dZ.reshape(-1, 4 * u))
        return dZ, {"recurrent_kernel": dU}, [dh, dc]
    for t in range(len(Z) - 1, -1, -1):
        if dH is not None:
            dh += dH[t]
        m = None if mask is None else mask[t]
        z, g, dz = Z[t], G[t], dZ[t]
        dhn, keep_h = _split(dh, m)
        dcn, keep_c = _split(dc, m)
        i, f, gc, o = g[:, :u], g[:, u:2 * u], g[:, 2 * u:3 * u], g[:, 3 * u:]
        dcn = dcn + act.backward(Cn[t], AC[t], dhn * o)
        dz[:, :u] = ract.backward(z[:, :u], i, dcn * gc)
        dz[:, u:2 * u] = ract.backward(z[:, u:2 * u], f, dcn * Cprev[t])
        dz[:, 2 * u:3 * u] = act.backward(z[:, 2 * u:3 * u], gc, dcn * i)
        dz[:, 3 * u:] = ract.backward(z[:, 3 * u:], o, dhn * AC[t])
        dc = _acc(dcn * f, keep_c)
        dh = dz @ UT
        if rmask is not None:
            dh *= rmask
        dh = _acc(dh, keep_h)
    dU = rnn_products.weight_gradient(Hin.reshape(-1, u), dZ.reshape(-1, 4 * u))
    return dZ, {"recurrent_kernel": dU}, [dh, dc]


# -- GRU: gates z, r, h; reset before (Keras 2 original) or after the product ---------
def gru_forward(xp, U, states, mask, rmask, act, ract, reset_after, rbias=None, **_):
    (h,) = states
    act, ract = _fast(act), _fast(ract)
    T, u = len(xp), U.shape[0]
    Uzr = np.ascontiguousarray(U[:, :2 * u])
    Uh = np.ascontiguousarray(U[:, 2 * u:])
    AZR = np.empty((T,) + h.shape[:1] + (2 * u,), xp.dtype)  # pre-activations of z, r
    ZR = np.empty_like(AZR)
    shape = (T,) + h.shape
    AH, HH, Hin, Hprev, H = (np.empty(shape, xp.dtype) for _ in range(5))
    HR = np.empty(shape, xp.dtype)  # reset_after: the recurrent part of h~; else r * h_prev
    for t in range(T):
        hr = _step_in(h, rmask)
        Hin[t] = hr
        Hprev[t] = h
        x = xp[t]
        if reset_after:
            inner = hr @ U
            if rbias is not None:
                inner += rbias
            AZR[t] = x[:, :2 * u] + inner[:, :2 * u]
            ZR[t] = ract.forward(AZR[t])
            HR[t] = inner[:, 2 * u:]
            AH[t] = x[:, 2 * u:] + ZR[t][:, u:] * HR[t]
        else:
            AZR[t] = x[:, :2 * u] + hr @ Uzr
            ZR[t] = ract.forward(AZR[t])
            np.multiply(ZR[t][:, u:], hr, out=HR[t])
            AH[t] = x[:, 2 * u:] + HR[t] @ Uh
        HH[t] = act.forward(AH[t])
        z = ZR[t][:, :u]
        hn = HH[t] + z * (h - HH[t])  # z * h + (1 - z) * h~
        h = _carry(h, hn, None if mask is None else mask[t])
        H[t] = h
    cache = (AZR, ZR, AH, HH, Hin, Hprev, HR, U, Uzr, Uh, mask, rmask, act, ract,
             reset_after)
    return H, [h], cache


def gru_backward(cache, dH, dfinal):
    (AZR, ZR, AH, HH, Hin, Hprev, HR, U, Uzr, Uh, mask, rmask, act, ract,
     reset_after) = cache
    u = U.shape[0]
    T = len(AZR)
    dh = _final(dfinal[0], Hin[0])
    dxp = np.empty(AZR.shape[:2] + (3 * u,), AZR.dtype)
    dinner = np.empty_like(dxp) if reset_after else None  # grads of hr @ U (+ rbias)
    UT, UzrT, UhT = np.ascontiguousarray(U.T), np.ascontiguousarray(Uzr.T), np.ascontiguousarray(Uh.T)
    dzr = np.empty(AZR.shape[1:], AZR.dtype)
    for t in range(T - 1, -1, -1):
        if dH is not None:
            dh += dH[t]
        dhn, keep = _split(dh, None if mask is None else mask[t])
        z, r = ZR[t][:, :u], ZR[t][:, u:]
        np.multiply(dhn, Hprev[t] - HH[t], out=dzr[:, :u])
        dah = act.backward(AH[t], HH[t], dhn * (1 - z))
        dxp[t, :, 2 * u:] = dah
        if reset_after:
            np.multiply(dah, HR[t], out=dzr[:, u:])
            dxp[t, :, :2 * u] = ract.backward(AZR[t], ZR[t], dzr)
            dinner[t, :, :2 * u] = dxp[t, :, :2 * u]
            np.multiply(dah, r, out=dinner[t, :, 2 * u:])
            dhr = dinner[t] @ UT
        else:
            drh = dah @ UhT
            np.multiply(drh, Hin[t], out=dzr[:, u:])
            dxp[t, :, :2 * u] = ract.backward(AZR[t], ZR[t], dzr)
            dhr = drh * r
            dhr += dxp[t, :, :2 * u] @ UzrT
        if rmask is not None:
            dhr *= rmask
        dh = _acc(dhr + dhn * z, keep)
    if reset_after:
        d2 = dinner.reshape(-1, 3 * u)
        grads = {"recurrent_kernel": rnn_products.weight_gradient(Hin.reshape(-1, u), d2),
                 "recurrent_bias": d2.sum(0)}
    else:
        dU = np.empty_like(U)
        dU[:, :2 * u] = rnn_products.weight_gradient(Hin.reshape(-1, u),
                                                     dxp[..., :2 * u].reshape(-1, 2 * u))
        dU[:, 2 * u:] = rnn_products.weight_gradient(HR.reshape(-1, u),
                                                     dxp[..., 2 * u:].reshape(-1, u))
        grads = {"recurrent_kernel": dU}
    return dxp, grads, [dh]
