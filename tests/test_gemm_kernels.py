"""gemm_kernels' GEMM (trainer/engine/kernels/gemm_kernels.py) and the dense chain's
switch to it (dense_chain.OWN_GEMM, off by default): against NumPy in float64 on odd
shapes, the packed weights never stale after the weights change (in place, set_weights,
a new array), the same bits on 1 and 2 threads, and within float32 rounding of
np.matmul + bias + relu (rtol 1e-5, atol 1e-5 over a sum of up to 1000 products)."""

import numpy as np
import pytest

from trainer.engine.kernels import dense_chain, gemm_kernels as gk, parallel

RTOL, ATOL = 1e-5, 1e-5


def _relu_gemm(A, W, b, lo=np.float32(0)):
    panels, starts = gk.pack(W)
    out = np.full((len(A), W.shape[1]), np.nan, np.float32)
    gk.gemm_bias_act(A, panels, starts, b, lo, out)
    return out


@pytest.mark.parametrize("M,K,N", [(8, 1, 32), (9, 3, 33), (13, 17, 45), (37, 5, 100),
                                   (21, 1001, 67), (64, 256, 64)])
def test_kernel_against_numpy_float64(M, K, N):
    rng = np.random.default_rng(M * K * N)
    A = rng.standard_normal((M, K)).astype(np.float32)
    W = rng.standard_normal((K, N)).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    exact = A.astype(np.float64) @ W.astype(np.float64) + b
    scale = np.abs(A).astype(np.float64) @ np.abs(W).astype(np.float64) + np.abs(b)
    got = _relu_gemm(A, W, b)
    # float32 rounding of a sum of K products, relative to the sum of their sizes
    assert np.all(np.abs(got - np.maximum(exact, 0)) <= 1e-6 * (K + 1) * scale)
    linear = _relu_gemm(A, W, b, np.float32(-np.inf))
    assert np.all(np.abs(linear - exact) <= 1e-6 * (K + 1) * scale)


def test_kernel_keeps_nan_and_checks_its_input():
    A = np.ones((8, 4), np.float32)
    A[3, 2] = np.nan
    out = _relu_gemm(A, np.ones((4, 32), np.float32), np.zeros(32, np.float32))
    assert np.isnan(out[3]).all() and not np.isnan(np.delete(out, 3, 0)).any()
    with pytest.raises(ValueError, match="expected at least 32 columns, got 10"):
        gk.pack(np.ones((4, 10), np.float32))


def _steps(rng, sizes):
    steps = []
    for k, n in zip(sizes[:-1], sizes[1:]):
        W = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
        steps.append(dense_chain.Dense(W, rng.normal(0, 0.3, n).astype(np.float32),
                                       True, None))
    return steps


@pytest.fixture
def own_gemm(monkeypatch):
    monkeypatch.setattr(dense_chain, "OWN_GEMM", True)
    monkeypatch.setattr(dense_chain, "_PACKED", {})


def test_chain_matches_matmul_and_not_the_thread_count(own_gemm, monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1100, 45)).astype(np.float32)
    steps = _steps(rng, (45, 70, 33))
    threads = parallel.num_threads()
    try:
        ys = []
        for n in (1, 2):
            parallel.set_num_threads(n)
            ys.append(dense_chain.run(x, steps))
    finally:
        parallel.set_num_threads(threads)
    assert np.array_equal(ys[0], ys[1])
    assert len(dense_chain._PACKED) == 2  # the GEMM ran, on packed weights
    monkeypatch.setattr(dense_chain, "OWN_GEMM", False)
    np.testing.assert_allclose(ys[0], dense_chain.run(x, steps), rtol=RTOL, atol=ATOL)


def test_packed_weights_follow_every_change_of_the_kernel(own_gemm):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((16, 40)).astype(np.float32)
    (step,) = _steps(rng, (40, 35))
    W = step.kernel

    def expect():
        return np.maximum(x.astype(np.float64) @ W + step.bias, 0)

    np.testing.assert_allclose(step(x), expect(), rtol=RTOL, atol=ATOL)
    W -= 0.01 * np.sign(W)  # an optimizer step, in place
    np.testing.assert_allclose(step(x), expect(), rtol=RTOL, atol=ATOL)
    W[39, 34] += 1.0  # one value, in the last (overlapping) panel
    np.testing.assert_allclose(step(x), expect(), rtol=RTOL, atol=ATOL)
    W[...] = rng.standard_normal(W.shape)  # set_weights / a checkpoint, in place
    np.testing.assert_allclose(step(x), expect(), rtol=RTOL, atol=ATOL)
    step.kernel = W = W.copy() * 2  # a new array
    np.testing.assert_allclose(step(x), expect(), rtol=RTOL, atol=ATOL)


def test_model_weights_loaded_after_a_predict_are_used(own_gemm, tmp_path):
    from conftest import write_config
    from trainer.app import fit as api

    text = """\
seed: 5
data: {train: {dataset: iris}}
model:
  input_shape: [4]
  layers:
    - Dense: {units: 40, activation: relu}
    - Dense: {units: 36, activation: relu}
    - Dense: {units: 3, activation: softmax}
compile: {loss: categorical_crossentropy, optimizer: adam}
"""
    model = api.build(api.load_config(write_config(tmp_path, text)))
    x = np.random.default_rng(3).standard_normal((50, 4)).astype(np.float32)
    before = model.predict_on_batch([x])
    packed = len(dense_chain._PACKED)
    weights = {name: [w * 1.5 for w in ws] for name, ws in model.get_weights().items()}
    model.set_weights(weights)
    after = model.predict_on_batch([x])
    assert packed == 2 and not np.allclose(before, after)
    fresh = api.build(api.load_config(write_config(tmp_path, text)))
    fresh.set_weights(weights)
    dense_chain._PACKED.clear()
    np.testing.assert_allclose(after, fresh.predict_on_batch([x]), rtol=RTOL, atol=ATOL)
