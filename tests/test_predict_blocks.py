"""Inference in blocks (issue 28): ``Model.predict_on_batch`` runs each thread's
slice of a batch as blocks of ``predict_block_rows`` rows, a number fixed by the
model's shapes (its largest per-sample tensor under ``PREDICT_BLOCK_BYTES``), never
by the thread count. Blocked predictions equal unblocked ones to float32 rounding
(a BLAS product's last bits depend on where its rows are cut: rtol 1e-5, atol 1e-6),
masks exactly, and the numbers are bit-identical on 1 and 2 threads."""

from pathlib import Path

import numpy as np
import pytest

from trainer.build.builder import build_model
from trainer.config.loader import from_dict
from trainer.engine.kernels import parallel

TOL = {"rtol": 1e-5, "atol": 1e-6}
UNBLOCKED = 1 << 62  # a budget no tensor reaches: one block per thread's slice, as before
CNN = [{"Conv2D": {"filters": 6, "kernel_size": 3, "padding": "same", "activation": "relu"}},
       {"MaxPooling2D": {"pool_size": 2}},
       {"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu"}},
       "Flatten",
       {"Dense": {"units": 5, "activation": "softmax",
                  "activity_regularizer": {"l2": 0.01}}}]


def _model(model, loss="categorical_crossentropy", dtype=None):
    cfg = {"data": {"train": {"dataset": "iris"}}, "model": model,
           "compile": {"loss": loss, "optimizer": "sgd"}}
    if dtype:
        cfg["dtype"] = dtype
    return build_model(from_dict(cfg, Path("t.yaml")))


def _cnn(dtype=None):
    return _model({"input_shape": [8, 8, 3], "layers": CNN}, dtype=dtype)


def _functional():
    return _model({
        "inputs": {"a": {"shape": [3]}, "t": {"shape": [6, 6, 2]}},
        "layers": [{"Dense": {"name": "enc", "units": 4, "activation": "tanh", "inputs": "a"}},
                   {"Conv2D": {"name": "c", "filters": 3, "kernel_size": 3, "inputs": "t"}},
                   {"Flatten": {"name": "f"}},
                   {"Concatenate": {"name": "merged", "inputs": ["enc", "f"]}},
                   {"Dense": {"name": "label", "units": 3, "activation": "softmax"}},
                   {"Add": {"name": "value", "inputs": ["enc", "enc"]}}],
        "outputs": ["label", "value"]},
        loss={"label": "categorical_crossentropy", "value": "mse"})


def _masked():
    layers = [{"Embedding": {"input_dim": 7, "output_dim": 3, "mask_zero": True}},
              {"LSTM": {"units": 5, "return_sequences": True}},
              {"TimeDistributed": {"layer": {"Dense": {"units": 4, "activation": "softmax"}}}}]
    return _model({"input_shape": [6], "layers": layers},
                  loss="sparse_categorical_crossentropy")


def _inputs(name, n, rng):
    if name == "cnn":
        return [rng.normal(size=(n, 8, 8, 3))]
    if name == "functional":
        return [rng.normal(size=(n, 3)), rng.normal(size=(n, 6, 6, 2))]
    ids = rng.integers(1, 7, (n, 6)).astype(np.int32)
    for row in range(n):
        ids[row, row % 7:] = 0  # padding after sequences of every length 0-6
    return [ids]


MODELS = {"cnn": _cnn, "functional": _functional, "masked": _masked}


def _predict(model, xs, budget):
    model.PREDICT_BLOCK_BYTES, model.PREDICT_BLOCK_MIN_ROWS = budget, 1
    return model.predict_on_batch(xs, for_loss=True)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_blocked_equals_unblocked(name):
    model = MODELS[name]()
    n = 150
    xs = _inputs(name, n, np.random.default_rng(0))
    rows = None
    model.PREDICT_BLOCK_MIN_ROWS = 1
    for budget in (UNBLOCKED, 1):  # 1 byte: blocks of one row
        model.PREDICT_BLOCK_BYTES = budget
        rows = model.predict_block_rows()
    assert rows == 1
    seen = []
    forward = model.graph.forward
    model.graph.forward = lambda inputs, **kw: (seen.append(len(inputs[0])),
                                                forward(inputs, **kw))[1]
    outs, masks, penalty = _predict(model, xs, 1)
    assert sorted(seen) == [1] * n  # every block one row
    seen.clear()
    want, want_masks, want_penalty = _predict(model, xs, UNBLOCKED)
    assert len(seen) == len(parallel.ranges(n, model.PREDICT_MIN_ROWS))
    whole = forward(model.cast_inputs(xs), training=False, for_loss=True)
    assert len(outs) == len(want) == len(whole[0])
    for got, w, one in zip(outs, want, whole[0]):
        assert got.dtype == w.dtype and got.shape == w.shape == one.shape
        np.testing.assert_allclose(got, w, **TOL)
        np.testing.assert_allclose(got, one, **TOL)
    for got, w in zip(masks, want_masks):
        assert (got is None) == (w is None)
        if got is not None:
            np.testing.assert_array_equal(got, w)
    if name == "masked":
        np.testing.assert_array_equal(masks[0], xs[0] != 0)
    assert penalty == pytest.approx(want_penalty, rel=1e-5)
    if name == "cnn":
        assert penalty > 0  # the activity regularizer's sum over all blocks
    # without for_loss: the outputs alone, the same blocks
    model.PREDICT_BLOCK_BYTES = 1
    plain = model.predict_on_batch(xs)
    for got, w in zip(plain, outs):
        np.testing.assert_array_equal(got, w)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_same_bits_on_one_and_two_threads(name):
    model = MODELS[name]()
    xs = _inputs(name, 203, np.random.default_rng(1))
    largest = max(int(np.prod(s)) for s in model.graph.shapes) * model.dtype.itemsize
    before = parallel.num_threads()
    results = []
    try:
        for threads in (1, 2):
            parallel.set_num_threads(threads)
            results.append(_predict(model, xs, 7 * largest))  # blocks of 7 rows
    finally:
        parallel.set_num_threads(before)
    assert model.predict_block_rows() == 7
    (a, ma, pa), (b, mb, pb) = results
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(ma, mb):
        assert (x is None and y is None) or np.array_equal(x, y)
    assert pa == pb


def test_block_rows_follow_the_largest_tensor():
    model = _cnn()
    largest = 8 * 8 * 6 * 4  # the first convolution's output, float32
    assert max(int(np.prod(s)) for s in model.graph.shapes) == 8 * 8 * 6
    for floor in (1, 8):
        model.PREDICT_BLOCK_MIN_ROWS = floor
        for budget in (1, largest - 1, largest, 10 * largest + 5, 20 * largest):
            model.PREDICT_BLOCK_BYTES = budget
            assert model.predict_block_rows() == max(floor, budget // largest)
    wide = _cnn("float64")
    wide.PREDICT_BLOCK_BYTES, wide.PREDICT_BLOCK_MIN_ROWS = 20 * largest, 1
    assert wide.predict_block_rows() == 10  # twice the bytes a sample: half the rows
    # the defaults: the classic CNN's 32x32x32 float32 activations, 4 MB → 32 rows;
    # ResNet50's 112x112x64 (3.2 MB a sample) → the floor, 8 rows
    assert (type(model).PREDICT_BLOCK_BYTES, type(model).PREDICT_BLOCK_MIN_ROWS) == (4 << 20, 8)


def test_unknown_timesteps_are_not_blocked():
    model = _model({"input_shape": [None, 3],
                    "layers": [{"LSTM": {"units": 4}},
                               {"Dense": {"units": 2, "activation": "softmax"}}]})
    assert model.predict_block_rows() is None
    xs = [np.random.default_rng(2).normal(size=(140, 5, 3))]
    want = model.graph.forward(model.cast_inputs(xs), training=False)
    got = model.predict_on_batch(xs)
    np.testing.assert_allclose(got[0], want[0], **TOL)


@pytest.mark.parametrize("n,rows", [(0, 4), (1, 4), (10, 3), (150, 1), (1024, 32),
                                    (1000, 4096), (129, 7)])
def test_blocks_cover_the_parts(n, rows):
    got = parallel.blocks(n, rows, 64)
    assert got[0][0] == 0 and got[-1][1] == n
    assert all(b == c for (_, b), (c, _) in zip(got, got[1:]))
    assert all(b - a <= max(rows, 1) for a, b in got) or n == 0
    # every block inside one of run's parts: a thread's slice is never crossed
    parts = parallel.ranges(n, 64)
    assert all(any(p <= a and b <= q for p, q in parts) for a, b in got)
    # sizes within one inside a part
    for p, q in parts:
        sizes = [b - a for a, b in got if p <= a and b <= q]
        assert max(sizes) - min(sizes) <= 1
