"""The dense chain's narrow softmax output (trainer/engine/kernels/dense_chain_kernels.py:
product, bias and softmax in one compiled pass): against float64 NumPy on odd shapes,
each row's numbers independent of the block (and so the thread) computing it, and
the chain's step taking it only where it applies."""

import numpy as np
import pytest

from trainer import activations
from trainer.engine.kernels import dense_chain, dense_chain_kernels


def reference(x, W, b):
    z = x.astype(np.float64) @ W.astype(np.float64) + b
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_the_constants_agree():
    assert dense_chain.NARROW == dense_chain_kernels.NB
    assert dense_chain.NARROW_ROWS == dense_chain_kernels.MB


@pytest.mark.parametrize("n,k,units", [(8, 1, 1), (9, 33, 10), (517, 512, 10),
                                       (64, 7, 16), (23, 100, 2)])
def test_narrow_softmax_matches_float64(n, k, units):
    rng = np.random.default_rng(n + k + units)
    x = rng.normal(size=(n, k)).astype(np.float32)
    W = (rng.normal(size=(k, units)) / np.sqrt(k)).astype(np.float32)
    b = rng.normal(size=units).astype(np.float32)
    y = dense_chain._softmax(x, W, b) if n * units >= 4096 else None
    padded = np.zeros((k, dense_chain_kernels.NB), np.float32)
    padded[:, :units] = W
    got = np.empty((n, units), np.float32)
    dense_chain_kernels.narrow_softmax(x, padded, b, got)
    np.testing.assert_allclose(got, reference(x, W, b), rtol=2e-5, atol=1e-7)
    if y is not None:  # the chain's step takes the same kernel
        assert np.array_equal(y, got)
    # a row's numbers do not depend on the block it was computed in
    part = np.empty((n - 3, units), np.float32)
    dense_chain_kernels.narrow_softmax(x[3:], padded, b, part)
    assert np.array_equal(part, got[3:])


def test_nan_stays_in_its_row_and_the_chain_falls_back_where_it_must():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 64)).astype(np.float32)
    x[5, 3] = np.nan
    W = rng.normal(size=(64, 10)).astype(np.float32)
    b = rng.normal(size=10).astype(np.float32)
    softmax = activations.get("softmax")
    y = dense_chain.Dense(W, b, False, softmax)(x)
    assert np.isnan(y[5]).all() and not np.isnan(np.delete(y, 5, 0)).any()
    np.testing.assert_allclose(y, softmax.forward(x @ W + b), rtol=1e-5, atol=1e-7)
    # a strided input: NumPy's product, then the softmax pass; the same within rounding
    strided = np.repeat(x, 2, axis=1)[:, ::2]
    assert not strided.flags.c_contiguous
    np.testing.assert_allclose(dense_chain._softmax(strided, W, b), y, rtol=1e-5,
                               atol=1e-7, equal_nan=True)
