"""A dense chain compiled whole (trainer/engine/kernels/dense_chain.py's ``compiled``,
dense_chain_kernels.chain_blocks / chain_parts): every block through every step in
one compiled call that calls OpenBLAS's sgemm itself, a batch's parts in one Numba
parallel region. The same bits as the chain step by step on any thread count, the
weights as they are at each call, the step-by-step path wherever it cannot take the
chain, and a model that is one chain takes its batch whole."""

import ctypes
import threading

import numpy as np
import pytest

from conftest import write_config
from trainer.app import fit as api
from trainer.engine.kernels import blas, dense_chain, dense_chain_kernels, parallel

CONFIG = """\
seed: 11
data: {{train: {{dataset: iris}}}}
model:
  input_shape: [{features}]
  layers:
{layers}
compile: {{loss: {loss}, optimizer: adam}}
"""

#: chains the compiled path takes: (layers, loss)
CHAINS = {
    "relu-relu-narrow-softmax": ([
        "Dense: {units: 96, activation: relu}", "Dropout: {rate: 0.3}",
        "Dense: {units: 64, activation: relu}", "Dense: {units: 10, activation: softmax}"],
        "categorical_crossentropy"),
    "linear-nobias-wide-softmax": ([
        "Dense: {units: 48, use_bias: false}", "Dense: {units: 40, activation: softmax}"],
        "categorical_crossentropy"),
    "relu-linear-out": ([
        "Dense: {units: 33, activation: relu}", "Dense: {units: 17, activation: linear}",
        "Dense: {units: 5}"], "mse"),
    "one-dense-relu-out": ([
        "Dense: {units: 21, activation: relu, use_bias: false}", "Dropout: {rate: 0.5}"],
        "mse"),
}


def _model(tmp_path, layers, loss, features=31, dtype=None):
    text = CONFIG.format(features=features, loss=loss,
                         layers="\n".join(f"    - {layer}" for layer in layers))
    if dtype:
        text = text.replace("seed: 11", f"seed: 11\ndtype: {dtype}")
    model = api.build(api.load_config(write_config(tmp_path, text)))
    rng = np.random.default_rng(3)
    for layer in model.layers:  # biases away from 0
        if "bias" in layer.params:
            layer.params["bias"][...] = rng.normal(0, 0.3, layer.params["bias"].shape)
    return model


def _x(n, features=31, seed=0):
    return np.random.default_rng(seed).normal(size=(n, features)).astype(np.float32)


class Spy:
    """Counts the compiled chain's calls (serial and parallel) while it is on."""

    def __init__(self, monkeypatch):
        self.blocks, self.parts = [], []
        serial, region = dense_chain_kernels.chain_blocks, dense_chain_kernels.chain_parts
        monkeypatch.setattr(dense_chain_kernels, "chain_blocks",
                            lambda *a: self.blocks.append(a[-1] - a[-2]) or serial(*a))
        monkeypatch.setattr(dense_chain_kernels, "chain_parts",
                            lambda *a: self.parts.append(len(a[-1])) or region(*a))


def _step_by_step(model, x, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(dense_chain, "compiled", lambda *args: None)
        return model.predict_on_batch([x])[0]


def _on_threads(n, fn):
    try:
        parallel.set_num_threads(n)
        return fn()
    finally:
        parallel.set_num_threads(parallel.num_threads())


def test_blas_sgemm_is_numpys_product():
    gemm = blas.sgemm()
    if gemm is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS with 64-bit sizes")
    rng = np.random.default_rng(0)
    for m, k, n in ((1, 1, 1), (7, 13, 5), (64, 300, 17), (129, 784, 512)):
        a = rng.normal(size=(m, k)).astype(np.float32)
        b = rng.normal(size=(k, n)).astype(np.float32)
        c = np.full((m, n), np.nan, np.float32)
        gemm(blas.ROW_MAJOR, blas.NO_TRANS, blas.NO_TRANS, m, n, k, ctypes.c_float(1),
             a.ctypes.data, k, b.ctypes.data, n, ctypes.c_float(0), c.ctypes.data, n)
        assert np.array_equal(c, a @ b)


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_the_same_bits_as_step_by_step_on_any_thread_count(tmp_path, monkeypatch, name):
    if blas.sgemm() is None:
        pytest.skip("no OpenBLAS sgemm to call")
    model = _model(tmp_path, *CHAINS[name])
    # 2000: parts of two blocks; a softmax's blocks need fused.SMALL outputs, others
    # go down to the whole-graph chain's parts of 64 rows
    for n in (1024, 2000, 900) + (() if "softmax" in name else (128,)):
        x = _x(n, seed=n)
        spy = Spy(monkeypatch)
        ones = _on_threads(1, lambda: model.predict_on_batch([x])[0])
        twos = _on_threads(2, lambda: model.predict_on_batch([x])[0])
        threes = _on_threads(3, lambda: model.predict_on_batch([x])[0])
        # one thread: the blocks in the caller; more: one parallel region of the parts
        _, spans = dense_chain.layout(n, 1, dense_chain.WHOLE_MIN_ROWS)
        assert spy.blocks and spy.parts == ([len(spans)] * 2 if len(spans) > 1 else [])
        monkeypatch.undo()
        reference = _step_by_step(model, x, monkeypatch)
        assert ones.dtype == np.float32 and ones.shape == reference.shape
        assert np.array_equal(ones, reference) and np.array_equal(twos, reference)
        assert np.array_equal(threes, reference)
    # and the numbers themselves: the layers' formulas in float64
    h = x.astype(np.float64)
    for layer in model.layers:
        if "kernel" in layer.params:
            h = h @ layer.params["kernel"]
            if layer.use_bias:
                h = h + layer.params["bias"]
            name = layer.activation.registered_name
            if name == "relu":
                h = np.maximum(h, 0)
            elif name == "softmax":
                e = np.exp(h - h.max(axis=1, keepdims=True))
                h = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(reference, h, rtol=2e-4, atol=2e-5)


def test_nan_and_inf_stay_in_their_rows(tmp_path, monkeypatch):
    model = _model(tmp_path, *CHAINS["relu-relu-narrow-softmax"])
    x = _x(1024)
    x[5, 3], x[900, 0], x[901, 7] = np.nan, np.inf, -np.inf
    compiled = _on_threads(2, lambda: model.predict_on_batch([x])[0])
    reference = _step_by_step(model, x, monkeypatch)
    np.testing.assert_array_equal(compiled, reference)  # NaN where NaN
    bad = ~np.isfinite(compiled).all(axis=1)
    assert bad[[5, 900, 901]].all() and bad.sum() == 3


def test_weights_changed_in_place_are_used_at_the_next_call(tmp_path, monkeypatch):
    model = _model(tmp_path, *CHAINS["relu-linear-out"])
    x = _x(1024)
    before = model.predict_on_batch([x])[0]
    for layer in model.layers:
        if "kernel" in layer.params:
            layer.params["kernel"] *= 0.5
            layer.params["bias"] += 0.25
    after = model.predict_on_batch([x])[0]
    assert not np.allclose(before, after)
    assert np.array_equal(after, _step_by_step(model, x, monkeypatch))


@pytest.mark.parametrize("case", ["float64", "tanh", "small softmax", "strided", "sequences"])
def test_the_step_by_step_path_takes_what_the_compiled_one_cannot(tmp_path, monkeypatch,
                                                                  case):
    layers, loss = CHAINS["relu-relu-narrow-softmax"]
    features, dtype, n = 31, None, 1024
    if case == "float64":
        dtype = "float64"
    elif case == "tanh":
        layers = [layers[0].replace("relu", "tanh"), *layers[1:]]
    elif case == "small softmax":
        n = 700  # 2 parts of 350 rows: 3500 outputs a block, under fused.SMALL
    elif case == "sequences":
        layers = list(layers)
    model = _model(tmp_path, layers, loss, features, dtype)
    x = _x(n)
    if case == "strided":
        x = np.asfortranarray(x)
    if case == "sequences":
        x = _x(n * 3).reshape(n, 3, features)
        steps = [layer.inference_step(False) for layer in model.layers]
        steps = [s for s in steps if s is not dense_chain.IDENTITY]
        spy = Spy(monkeypatch)
        y = dense_chain.run(x, steps)
        assert not spy.blocks and not spy.parts and y.shape == (n, 3, 10)
        return
    spy = Spy(monkeypatch)
    y = model.predict_on_batch([x])[0]
    assert not spy.blocks and not spy.parts
    monkeypatch.undo()
    assert np.array_equal(y, _step_by_step(model, np.ascontiguousarray(x), monkeypatch))


@pytest.mark.skipif(parallel.MAX_PARTS < 2, reason="one CPU: one part")
def test_a_model_that_is_one_chain_takes_its_batch_whole(tmp_path, monkeypatch):
    model = _model(tmp_path, *CHAINS["relu-linear-out"])
    assert model.graph.threads_itself()
    cuts = []
    run_parts = parallel.run_parts
    monkeypatch.setattr(parallel, "run_parts", lambda fn, parts: cuts.append(parts)
                        or run_parts(fn, parts))
    spy = Spy(monkeypatch)
    _on_threads(2, lambda: model.predict_on_batch([_x(128)]))
    # no slices of the model's: the chain's own parts, 2 of 64 rows, in one region
    assert not cuts and spy.parts == [2]
    blocks, spans = dense_chain.layout(128, 1, dense_chain.WHOLE_MIN_ROWS)
    assert blocks == [(0, 64), (64, 128)] and spans == [(0, 1), (1, 2)]


def test_a_chain_inside_a_bigger_graph_runs_in_each_slice(tmp_path, monkeypatch):
    # an Activation first: the chain is not the whole graph, the model cuts the batch
    # into slices on its threads and each slice runs the chain's blocks in its thread
    layers, loss = CHAINS["relu-linear-out"]
    model = _model(tmp_path, ["Activation: {activation: tanh}", *layers], loss)
    assert not model.graph.threads_itself()
    x = _x(2048)
    spy = Spy(monkeypatch)
    y = _on_threads(2, lambda: model.predict_on_batch([x])[0])
    assert spy.blocks and not spy.parts
    monkeypatch.undo()
    assert np.array_equal(y, _step_by_step(model, x, monkeypatch))


def test_two_threads_predicting_at_once(tmp_path, monkeypatch):
    # one parallel region at a time: the second caller runs its parts in its own thread
    model = _model(tmp_path, *CHAINS["relu-relu-narrow-softmax"])
    xs = [_x(1024, seed=s) for s in range(2)]
    expected = [model.predict_on_batch([x])[0] for x in xs]
    results, errors = {}, []

    def work(k):
        try:
            for _ in range(20):
                results.setdefault(k, []).append(model.predict_on_batch([xs[k]])[0])
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    def both():
        threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    _on_threads(2, both)
    assert not errors
    for k in range(2):
        assert len(results[k]) == 20
        assert all(np.array_equal(r, expected[k]) for r in results[k])


def test_a_read_only_mapped_input(tmp_path):
    model = _model(tmp_path, *CHAINS["relu-relu-narrow-softmax"])
    x = _x(1024)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert not mapped.flags.writeable
    assert np.array_equal(model.predict_on_batch([mapped])[0], model.predict_on_batch([x])[0])
