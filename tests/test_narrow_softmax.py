"""The dense chain's narrow softmax output (trainer/engine/kernels/dense_chain_kernels.py:
product, bias and softmax in one compiled pass): against float64 NumPy on odd shapes,
each row's numbers independent of the block (and so the thread) computing it, and
the chain's step taking it only where it applies."""

import numpy as np
import pytest

from trainer import activations
from trainer.engine.kernels import dense_chain, dense_chain_kernels, fused


def reference(x, W, b):
    z = x.astype(np.float64) @ W.astype(np.float64) + b
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_the_constants_agree():
    assert dense_chain.NARROW == dense_chain_kernels.NB
    assert dense_chain.NARROW_ROWS == dense_chain_kernels.MB


@pytest.mark.parametrize("n,k,units", [(8, 1, 1), (9, 33, 10), (517, 512, 10),
                                       (64, 7, 16), (23, 100, 2), (2049, 5, 2)])
def test_narrow_softmax_matches_float64(n, k, units):
    rng = np.random.default_rng(n + k + units)
    x = rng.normal(size=(n, k)).astype(np.float32)
    W = (rng.normal(size=(k, units)) / np.sqrt(k)).astype(np.float32)
    b = rng.normal(size=units).astype(np.float32)
    y = dense_chain._softmax(x, W, b)  # None below fused.SMALL outputs: NumPy's lines
    padded = np.zeros((k, dense_chain_kernels.NB), np.float32)
    padded[:, :units] = W
    got = np.empty((n, units), np.float32)
    dense_chain_kernels.narrow_softmax(x, padded, b, got)
    np.testing.assert_allclose(got, reference(x, W, b), rtol=2e-5, atol=1e-7)
    assert (y is None) == (n * units < fused.SMALL)
    if y is not None:
        assert np.array_equal(y, got)  # the chain's step takes the same kernel
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


MLP = """\
seed: 5
data: {train: {dataset: iris}}
model:
  input_shape: [40]
  layers:
    - Dense: {units: 48, activation: relu}
    - Dropout: {rate: 0.2}
    - Dense: {units: 10, activation: softmax}
compile: {loss: categorical_crossentropy, optimizer: adam}
"""


def test_an_mlp_predicts_the_same_on_1_and_2_threads_and_as_the_layers_one_by_one(
        tmp_path, monkeypatch):
    from conftest import write_config
    from trainer.app import fit as api
    from trainer.engine import fusion
    from trainer.engine.kernels import parallel

    model = api.build(api.load_config(write_config(tmp_path, MLP)))
    # 2 parts of 512 rows: blocks of 5120 outputs, above fused.SMALL
    x = np.random.default_rng(1).normal(size=(1024, 40)).astype(np.float32)
    calls = []
    kernel = dense_chain_kernels.narrow_softmax
    try:
        with monkeypatch.context() as m:  # step by step (the whole chain not compiled)
            m.setattr(dense_chain, "compiled", lambda *args: None)
            m.setattr(dense_chain_kernels, "narrow_softmax",
                      lambda *a: calls.append(len(a[0])) or kernel(*a))
            parallel.set_num_threads(1)
            one = model.predict_on_batch([x])[0]
            parallel.set_num_threads(2)
            two = model.predict_on_batch([x])[0]
        whole = model.predict_on_batch([x])[0]  # the whole chain compiled, narrow inside
    finally:
        parallel.set_num_threads(parallel.num_threads())
    assert calls and sum(calls) == 2 * len(x)  # every row through the compiled pass
    assert np.array_equal(one, two) and np.array_equal(one, whole)
    with monkeypatch.context() as m:
        m.setattr(fusion, "_dense_chain", lambda *args: None)
        one_by_one = model.predict_on_batch([x])[0]
    np.testing.assert_allclose(one, one_by_one, rtol=1e-5, atol=1e-6)
    dense = [layer for layer in model.layers if "kernel" in layer.params]
    h = np.maximum(x @ dense[0].params["kernel"].astype(np.float64)
                   + dense[0].params["bias"], 0)
    np.testing.assert_allclose(one, reference(h, dense[1].params["kernel"],
                                              dense[1].params["bias"]),
                               rtol=1e-4, atol=1e-6)
