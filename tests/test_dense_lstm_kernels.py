"""The LSTM step kernels (trainer/engine/kernels/rnn.py) against plain NumPy formulas,
in float32 (the vectorised path) and float64, with and without a mask, for both
recurrent activations; and row independence (a slice of the batch through the kernel
gives that slice of the whole batch's result, bit for bit: what the engine's batch
split over threads relies on). Gradients through finite differences: test_recurrent.py.
"""

import numpy as np
import pytest

from trainer.engine.kernels import rnn

#: 37 units: vector bodies and scalar remainders both run
B, U = 6, 37


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _hard_sigmoid(v):
    return np.clip(0.2 * v + 0.5, 0.0, 1.0)


RACT = {rnn.SIGMOID: _sigmoid, rnn.HARD_SIGMOID: _hard_sigmoid}


def _inputs(rng, dtype, masked):
    z = rng.normal(size=(B, 4 * U)).astype(dtype) * 2  # h_prev @ U
    xp = rng.normal(size=(B, 4 * U)).astype(dtype)
    h = rng.normal(size=(B, U)).astype(dtype)
    c = rng.normal(size=(B, U)).astype(dtype)
    m = (np.arange(B) % 3 != 1).astype(dtype) if masked else np.ones(B, dtype)
    return z, xp, h, c, m


def _forward(z, xp, h, c, m, code):
    out = [np.empty_like(z), np.empty_like(h), np.empty_like(h), np.empty_like(h),
           np.empty_like(h)]  # g, cn, ac, h_out, c_out
    z = z.copy()
    rnn.lstm_step_forward(z, xp, h, c, m, code, *out)
    return [z] + out


def _numpy_forward(z, xp, h, c, m, code):
    ra = RACT[code]
    a = (z.astype(np.float64) + xp)
    i, f, gc, o = ra(a[:, :U]), ra(a[:, U:2 * U]), np.tanh(a[:, 2 * U:3 * U]), ra(a[:, 3 * U:])
    cn = f * c + i * gc
    ac = np.tanh(cn)
    keep = m[:, None]
    return [a, np.concatenate([i, f, gc, o], axis=1), cn, ac, h + keep * (o * ac - h),
            c + keep * (cn - c)]


def _backward(dh, dc, fwd, c, m, code):
    z, g, cn, ac = fwd[:4]
    out = [np.empty_like(z), np.empty_like(dh), np.empty_like(dh)]  # dz, dc_out, dh_keep
    rnn.lstm_step_backward(dh, dc, z, g, cn, ac, c, m, code, *out)
    return out


def _numpy_backward(dh, dc, fwd, c, m, code):
    z, g = fwd[0].astype(np.float64), fwd[1].astype(np.float64)
    ac = fwd[3].astype(np.float64)
    i, f, gc, o = g[:, :U], g[:, U:2 * U], g[:, 2 * U:3 * U], g[:, 3 * U:]
    if code == rnn.SIGMOID:
        d = g * (1 - g)
    else:
        d = np.where(np.abs(z) < 2.5, 0.2, 0.0)
    keep = m[:, None]
    dhn, dcn = dh * keep, dc * keep
    dcn = dcn + dhn * o * (1 - ac * ac)
    dz = np.concatenate([dcn * gc * d[:, :U], dcn * c * d[:, U:2 * U],
                         dcn * i * (1 - gc * gc), dhn * ac * d[:, 3 * U:]], axis=1)
    return [dz, dcn * f + dc * (1 - keep), dh * (1 - keep)]


@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-6), (np.float64, 1e-12)])
@pytest.mark.parametrize("code", [rnn.SIGMOID, rnn.HARD_SIGMOID])
@pytest.mark.parametrize("masked", [False, True])
def test_lstm_step_kernels_match_numpy(rng, dtype, tol, code, masked):
    z, xp, h, c, m = _inputs(rng, dtype, masked)
    fwd = _forward(z, xp, h, c, m, code)
    for k, (got, want) in enumerate(zip(fwd, _numpy_forward(z, xp, h, c, m, code))):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=f"forward {k}")
    dh = rng.normal(size=(B, U)).astype(dtype)
    dc = rng.normal(size=(B, U)).astype(dtype)
    bwd = _backward(dh, dc, fwd, c, m, code)
    for k, (got, want) in enumerate(zip(bwd, _numpy_backward(dh, dc, fwd, c, m, code))):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=10 * tol, atol=10 * tol,
                                   err_msg=f"backward {k}")


@pytest.mark.parametrize("code", [rnn.SIGMOID, rnn.HARD_SIGMOID])
def test_lstm_step_kernels_rows_are_independent(rng, code):
    z, xp, h, c, m = _inputs(rng, np.float32, True)
    whole = _forward(z, xp, h, c, m, code)
    dh = rng.normal(size=(B, U)).astype(np.float32)
    dc = rng.normal(size=(B, U)).astype(np.float32)
    whole_b = _backward(dh, dc, whole, c, m, code)
    for a, b in ((0, 1), (1, 4), (4, B)):
        part = _forward(z[a:b], xp[a:b], h[a:b], c[a:b], m[a:b], code)
        for got, want in zip(part, whole):
            np.testing.assert_array_equal(got, want[a:b])
        part_b = _backward(dh[a:b], dc[a:b], [w[a:b] for w in whole], c[a:b], m[a:b], code)
        for got, want in zip(part_b, whole_b):
            np.testing.assert_array_equal(got, want[a:b])


def test_tanh_float32_approximation_is_close_to_libm():
    """The vectorised float32 tanh (Eigen's rational form) within a few ulp, and exact
    ±1 at the clamp."""
    from numba import njit

    @njit(error_model="numpy", fastmath=True)
    def run(x, out):
        for j in range(len(x)):
            out[j] = rnn.tanh(x[j])

    x = np.linspace(-12, 12, 4001, dtype=np.float32)
    out = np.empty_like(x)
    run(x, out)
    np.testing.assert_allclose(out, np.tanh(x.astype(np.float64)), rtol=0, atol=3e-7)


@pytest.mark.parametrize("rows,m,n", [(300, 7, 1000), (50, 16, 129), (1, 3, 200)])
def test_weight_gradient_is_the_product_and_thread_invariant(rng, monkeypatch, rows, m, n):
    """``rnn_products.weight_gradient`` is ``x.T @ d``, the same bits on one thread and
    two (column blocks of odd widths, more blocks than threads), on strided ``d`` too."""
    from trainer.engine.kernels import parallel, rnn_products

    monkeypatch.setattr(parallel, "MATMUL_SPLIT", 1)
    monkeypatch.setattr(rnn_products, "COLUMN_BLOCK", 37)
    x = rng.normal(size=(rows, m)).astype(np.float32)
    d = rng.normal(size=(rows, 2 * n)).astype(np.float32)[:, ::2]
    before = parallel.num_threads()
    try:
        results = []
        for threads in (1, 2):
            parallel.set_num_threads(threads)
            results.append(rnn_products.weight_gradient(x, d))
    finally:
        parallel.set_num_threads(before)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_allclose(results[0], x.astype(np.float64).T @ d, rtol=1e-4, atol=1e-4)
