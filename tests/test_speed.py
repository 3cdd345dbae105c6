"""The optimized engine paths against the plain ones: batch-parallel chunked
convolution vs the loop reference and vs its own single-thread run, and float32 kept
everywhere in a training step (no silent float64 promotion). No timings here: speed
lives in benchmarks/run.py."""

import numpy as np
import pytest

from trainer.engine.kernels import conv_reference as ref
from trainer.engine.kernels import parallel
from trainer.layers.conv import ConvPlan
from trainer.config.families import layers


@pytest.fixture(autouse=True)
def restore_threads():
    before = parallel.num_threads()
    yield
    parallel.set_num_threads(before)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of one sample and two worker threads: every split path is taken."""
    monkeypatch.setattr(ConvPlan, "CHUNK_BYTES", 1)
    parallel.set_num_threads(2)


def _conv(x, filters, **args):
    layer = layers.get({"Conv2D": {"filters": filters, **args}})
    layer.dtype = np.float64
    layer.build(x.shape[1:], np.random.default_rng(0))
    layer.cast(np.float64)
    return layer


def _loop_grads(x, W, b, dy, strides, padding, dilation):
    """dx, dW, db of sum(dy * conv(x)) from the loop reference, by linearity:
    conv is linear in x and in W, so each gradient is a reference conv's adjoint —
    computed here by finite differences of the exact (linear) forward."""
    base = ref.conv2d(x, W, b, strides, padding, dilation)
    dW = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        e = np.zeros_like(W)
        e[idx] = 1.0
        dW[idx] = (dy * (ref.conv2d(x, W + e, b, strides, padding, dilation) - base)).sum()
    db = dy.reshape(-1, dy.shape[-1]).sum(axis=0)
    dx = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = 1.0
        dx[idx] = (dy * (ref.conv2d(x + e, W, b, strides, padding, dilation) - base)).sum()
    return dx, dW, db


@pytest.mark.parametrize("seed", range(8))
def test_parallel_chunked_conv_matches_reference_on_random_shapes(seed, small_chunks):
    r = np.random.default_rng(seed)
    kh, kw = (int(v) for v in r.integers(1, 4, 2))
    sh, sw = (int(v) for v in r.integers(1, 3, 2))
    dh, dw = (1, 1) if max(sh, sw) > 1 else (int(v) for v in r.integers(1, 3, 2))
    padding = ["valid", "same"][seed % 2]
    n = int(r.integers(4, 7))  # more samples than threads: several chunks per thread
    x = r.normal(size=(n, int(r.integers(5, 8)), int(r.integers(5, 8)), 2))
    layer = _conv(x, 3, kernel_size=[kh, kw], strides=[sh, sw], dilation_rate=[dh, dw],
                  padding=padding)
    W = r.normal(size=layer.params["kernel"].shape)
    b = r.normal(size=3)
    layer.set_weights([W, b])
    y, back = layer.forward(x, True)
    np.testing.assert_allclose(y, ref.conv2d(x, W, b, (sh, sw), padding, (dh, dw)),
                               atol=1e-10)
    dy = r.normal(size=y.shape)
    layer.zero_grads()
    dx = back(dy)
    want_dx, want_dW, want_db = _loop_grads(x, W, b, dy, (sh, sw), padding, (dh, dw))
    np.testing.assert_allclose(dx, want_dx, atol=1e-8)
    np.testing.assert_allclose(layer.grads["kernel"], want_dW, atol=1e-8)
    np.testing.assert_allclose(layer.grads["bias"], want_db, atol=1e-8)


@pytest.mark.parametrize("activation", ["relu", "linear", "tanh"])
def test_threads_and_chunks_do_not_change_results(activation, monkeypatch):
    r = np.random.default_rng(3)
    x = r.normal(size=(9, 8, 8, 3)).astype(np.float32)
    dy = r.normal(size=(9, 8, 8, 4)).astype(np.float32)
    results = []
    for threads, chunk in ((1, 1 << 30), (2, 1), (2, 300)):
        monkeypatch.setattr(ConvPlan, "CHUNK_BYTES", chunk)
        parallel.set_num_threads(threads)
        layer = layers.get({"Conv2D": {"filters": 4, "kernel_size": 3, "padding": "same",
                                       "activation": activation}})
        layer.build(x.shape[1:], np.random.default_rng(0))
        y, back = layer.forward(x, True)
        dx = back(dy)
        results.append((y, dx, layer.grads["kernel"].copy(), layer.grads["bias"].copy()))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert a.dtype == b.dtype == np.float32
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_first_layer_skips_its_input_gradient():
    x = np.random.default_rng(0).normal(size=(4, 6, 6, 2)).astype(np.float32)
    layer = layers.get({"Conv2D": {"filters": 2, "kernel_size": 3}})
    layer.build(x.shape[1:], np.random.default_rng(0))
    layer.needs_input_grad = False
    y, back = layer.forward(x, True)
    assert back(np.ones_like(y)) is None
    assert np.abs(layer.grads["kernel"]).sum() > 0


def test_split_covers_the_range_evenly():
    assert parallel.split(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert parallel.split(2, 8) == [(0, 1), (1, 2)]
    assert parallel.split(0, 2) == [(0, 0)]
    assert parallel.run(lambda a, b: (a, b), 1) == [(0, 1)]


def test_blas_is_pinned_to_one_thread_and_big_products_split(monkeypatch):
    """With several engine threads OpenBLAS runs one thread per call (the engine's
    workers split the work); parallel.matmul gives the exact product either way."""
    blas = parallel.blas_threads()
    parallel.set_num_threads(2)
    monkeypatch.setattr(parallel, "_pinned", False)
    parallel.pin_blas()
    if blas is not None:
        assert blas[0]() == 1
        assert parallel.run(lambda a, b: blas[0](), 8, min_items=1) == [1, 1]
    monkeypatch.setattr(parallel, "MATMUL_SPLIT", 1)
    r = np.random.default_rng(0)
    for shape_a, shape_b in (((50, 7), (7, 3)), ((3, 40), (40, 60))):
        a = r.normal(size=shape_a).astype(np.float32)
        b = r.normal(size=shape_b).astype(np.float32)
        np.testing.assert_allclose(parallel.matmul(a, b), a @ b, rtol=1e-5, atol=1e-5)
        at = np.ascontiguousarray(a.T).T  # a transposed view, as weight gradients pass
        np.testing.assert_allclose(parallel.matmul(at, b), a @ b, rtol=1e-5, atol=1e-5)


def _model(layer_list, input_shape, loss="categorical_crossentropy", optimizer="adam"):
    from pathlib import Path

    from trainer.build.builder import build_model
    from trainer.config.loader import from_dict

    cfg = from_dict({"data": {"train": {"dataset": "iris"}},
                     "model": {"input_shape": input_shape, "layers": layer_list},
                     "compile": {"loss": loss, "optimizer": optimizer}}, Path("t.yaml"))
    return build_model(cfg)


CNN = [{"Conv2D": {"filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"}},
       {"Conv2D": {"filters": 4, "kernel_size": 3, "strides": 2, "activation": "relu"}},
       {"MaxPooling2D": {"pool_size": 2}}, {"Dropout": {"rate": 0.25}}, "Flatten",
       {"Dense": {"units": 8, "activation": "relu"}}, {"BatchNormalization": {}},
       {"Dense": {"units": 3, "activation": "softmax"}}]
LSTM = [{"LSTM": {"units": 5, "return_sequences": True}}, {"GRU": {"units": 4}},
        {"Dense": {"units": 3, "activation": "softmax"}}]


@pytest.mark.parametrize("spec", [(CNN, [9, 9, 2], "rmsprop"), (LSTM, [6, 3], "adam"),
                                  ([{"Dense": {"units": 7, "activation": "tanh"}},
                                    {"Dropout": {"rate": 0.2}},
                                    {"Dense": {"units": 3, "activation": "softmax"}}],
                                   [4], {"SGD": {"momentum": 0.9, "nesterov": True}})])
def test_a_training_step_stays_in_float32(spec):
    """Every activation, input gradient, weight, weight gradient and optimizer slot of
    a training step is float32: no silent float64 promotion anywhere."""
    layer_list, input_shape, optimizer = spec
    model = _model(layer_list, input_shape, optimizer=optimizer)
    seen = []
    for layer in model.layers:
        forward = layer.forward

        def traced(x, training, _f=forward, _name=layer.name, **kw):
            y, back = _f(x, training, **kw)
            seen.append((f"{_name} output", y.dtype))

            def traced(fn):
                def run(dy):
                    dx = fn(dy)
                    if dx is not None:
                        seen.append((f"{_name} input gradient", dx.dtype))
                    return dx
                return run

            traced_back = traced(back)
            if hasattr(back, "preactivation"):  # the fused softmax + cross-entropy
                traced_back.preactivation = traced(back.preactivation)
            return y, traced_back

        layer.forward = traced
    r = np.random.default_rng(0)
    x = r.normal(size=(16, *input_shape)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[r.integers(0, 3, 16)]
    for _ in range(2):
        model.train_on_batch([x], [y])
    assert seen
    seen += [(f"{layer.name} weight {k}", v.dtype) for layer in model.layers
             for d in (layer.params, layer.grads, layer.buffers) for k, v in d.items()]
    for slots in model.optimizer.slots:
        seen += [("optimizer slot", np.asarray(s).dtype) for s in
                 (slots.values() if isinstance(slots, dict) else slots)]
    promoted = [name for name, dtype in seen if dtype != np.float32]
    assert not promoted, promoted
    assert model.predict_on_batch([x])[0].dtype == np.float32


@pytest.mark.parametrize("loss,labels", [
    ("categorical_crossentropy", "onehot"),
    ({"categorical_crossentropy": {"label_smoothing": 0.1}}, "onehot"),
    ("sparse_categorical_crossentropy", "ids"),
])
@pytest.mark.parametrize("head", ["dense", "activation", "sequence"])
def test_fused_softmax_cross_entropy_matches_the_chained_gradient(loss, labels, head):
    """The fused softmax + cross-entropy backward (gradient handed to the softmax's
    input) gives the same weight gradients as the loss gradient chained through the
    softmax Jacobian, with sample weights too (probabilities here are far from the
    1e-7 clip, where the two differ by design)."""
    from trainer.losses.crossentropy import fuses_with_softmax

    if head == "sequence":
        layer_list = [{"LSTM": {"units": 5, "return_sequences": True}},
                      {"Dense": {"units": 4, "activation": "softmax"}}]
        input_shape, out_shape = [3, 2], (6, 3, 4)
    else:
        last = ([{"Dense": {"units": 4, "activation": "softmax"}}] if head == "dense" else
                [{"Dense": {"units": 4}}, {"Activation": "softmax"}])
        layer_list = [{"Dense": {"units": 5, "activation": "tanh"}}, *last]
        input_shape, out_shape = [3], (6, 4)
    r = np.random.default_rng(0)
    x = r.normal(size=(6, *input_shape))
    ids = r.integers(0, 4, out_shape[:-1])
    y = ids if labels == "ids" else np.eye(4)[ids]
    sw = r.random(6)
    grads = []
    for fuse in (True, False):
        model = _model(layer_list, input_shape, loss=loss, optimizer="sgd")
        for layer in model.layers:
            layer.cast(np.float64)
        model.dtype = np.dtype(np.float64)
        assert bool(model._fused) and fuses_with_softmax(model.outputs[0].loss)
        if not fuse:
            model._fused = set()
        model.optimizer.learning_rate = 0.0  # gradients only: weights stay put
        model.train_on_batch([x], [y], sw)
        grads.append([g.copy() for g in model.grads()])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_only_cross_entropy_on_a_softmax_output_is_fused():
    assert _model([{"Dense": {"units": 4, "activation": "softmax"}}], [3])._fused == {0}
    assert _model([{"Dense": {"units": 4, "activation": "softmax"}}], [3],
                  loss="mse")._fused == set()
    assert _model([{"Dense": {"units": 4, "activation": "sigmoid"}}], [3])._fused == set()
    assert _model([{"Dense": {"units": 4, "activation": "softmax"}}], [3],
                  loss={"categorical_crossentropy": {"from_logits": True}})._fused == set()


@pytest.mark.parametrize("args", [{}, {"recurrent_dropout": 0.3, "return_sequences": True},
                                  {"return_state": True, "go_backwards": True}])
def test_lstm_batch_slices_on_threads_match_one_thread(args):
    """The fused LSTM loop runs batch slices on worker threads: the same outputs,
    state and weight gradients as one thread, masked steps included."""
    r = np.random.default_rng(5)
    x = r.normal(size=(20, 6, 3)).astype(np.float32)
    mask = np.ones((20, 6), bool)
    mask[3, 4:] = mask[11, 2:] = False
    results = []
    for threads in (1, 2):
        parallel.set_num_threads(threads)
        layer = layers.get({"LSTM": {"units": 4, **args}})
        layer.build(x.shape[1:], np.random.default_rng(0))
        layer.rng = np.random.default_rng(1)
        y, back = layer.forward(x, True, mask=mask)
        outs = y if isinstance(y, list) else [y]
        dx = back([np.ones_like(o) for o in outs] if isinstance(y, list) else np.ones_like(y))
        dxs = dx if isinstance(dx, list) else [dx]
        results.append([*outs, *dxs, *(g.copy() for g in layer.grads.values())])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_big_dense_forward_split_over_threads_matches_one_product(monkeypatch):
    from trainer.layers.core import Dense

    monkeypatch.setattr(Dense, "CHUNK_ROWS", 100)
    r = np.random.default_rng(0)
    x = r.normal(size=(1030, 160)).astype(np.float32)  # ≥ 2 chunks of rows: split
    for activation in ("relu", "tanh"):
        layer = layers.get({"Dense": {"units": 128, "activation": activation}})
        layer.build((160,), r)
        want = x @ layer.params["kernel"] + layer.params["bias"]
        want = np.maximum(want, 0) if activation == "relu" else np.tanh(want)
        parallel.set_num_threads(2)
        y, _ = layer.forward(x, False)
        assert y.dtype == np.float32
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_malloc_tuning_is_idempotent_and_harmless():
    parallel.keep_freed_memory()
    parallel.keep_freed_memory()
    a = np.ones(10 << 20, np.float32)  # big allocations still work and are zeroed
    assert float(a.sum()) == 10 << 20
    assert not np.zeros(5 << 20).any()


def test_big_dropout_masks_drawn_in_pieces_are_reproducible_across_threads(monkeypatch):
    from trainer.layers.core import Dropout

    monkeypatch.setattr(Dropout, "PIECE", 1000)
    x = np.random.default_rng(0).random((40, 30, 10)).astype(np.float32) + 1
    outs = []
    for threads in (1, 2):
        parallel.set_num_threads(threads)
        layer = layers.get({"Dropout": {"rate": 0.3}})
        layer.rng = np.random.default_rng(7)
        y, back = layer.forward(x, True)
        dx = back(np.ones_like(x))
        kept = y != 0
        np.testing.assert_allclose(y[kept], x[kept] / 0.7, rtol=1e-6)
        np.testing.assert_allclose(dx, kept / np.float32(0.7), rtol=1e-6)
        assert abs(kept.mean() - 0.7) < 0.02 and y.dtype == np.float32
        outs.append(y)
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("spec", [(CNN, [9, 9, 2]), (LSTM, [6, 3])])
def test_inference_split_over_threads_matches_one_pass(spec, monkeypatch):
    from trainer.build.model import Model

    layer_list, input_shape = spec
    model = _model(layer_list, input_shape, optimizer="rmsprop")
    r = np.random.default_rng(0)
    x = r.normal(size=(37, *input_shape)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[r.integers(0, 3, 37)]
    model.train_on_batch([x], [y])  # moving statistics move away from their start
    parallel.set_num_threads(1)
    whole = model.predict_on_batch([x])[0]
    monkeypatch.setattr(Model, "PREDICT_MIN_ROWS", 5)
    parallel.set_num_threads(2)
    split = model.predict_on_batch([x])[0]
    assert split.dtype == np.float32 and split.shape == whole.shape
    np.testing.assert_allclose(split, whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 6), (1, 1), (64, 33)])
@pytest.mark.parametrize("compiled", [True, False])
def test_fused_bias_relu_and_its_backward_match_numpy(dtype, shape, compiled, monkeypatch):
    """The one-pass kernels give the NumPy expressions' numbers exactly — NaN and inf
    included (a diverging run must still show NaN) — and fall back to NumPy for
    arrays they do not take (non-contiguous, another dtype)."""
    from trainer.engine.kernels import fused

    monkeypatch.setattr(fused, "MIN_ELEMENTS", 1 if compiled else 1 << 30)
    monkeypatch.setattr(fused, "SMALL", 1 if compiled else 1 << 30)
    r = np.random.default_rng(sum(shape))
    z = r.normal(size=shape).astype(dtype)
    z.flat[::5] = np.nan
    z.flat[1::7] = np.inf
    z.flat[2::7] = -np.inf
    bias = r.normal(size=shape[-1]).astype(dtype)
    for b in (bias, None):
        for relu in (True, False):
            want = z.copy()
            if b is not None:
                want += b
            if relu:
                np.maximum(want, 0, out=want)
            got = z.copy()
            assert fused.bias_act(got, b, relu) is got
            np.testing.assert_array_equal(got, want)
    y = np.maximum(z + bias, 0)
    dy = r.normal(size=shape).astype(dtype)
    dy.flat[3::4] = np.nan
    np.testing.assert_array_equal(fused.relu_backward(dy, y), dy * (y > 0))
    out = np.empty_like(dy)
    assert fused.relu_backward(dy, y, out=out) is out
    np.testing.assert_array_equal(out, dy * (y > 0))
    # fallbacks: a non-contiguous view, a bias of another dtype
    zt = np.ascontiguousarray(z.reshape(-1, shape[-1]).T).T[::2]
    bt = bias.copy()
    want = np.maximum(zt + bt, 0)
    got = zt.copy(order="F")
    fused.bias_act(got, bt, True)
    np.testing.assert_array_equal(got, want)
    other = bias.astype(np.float64 if dtype == np.float32 else np.float32)
    got, want = z.copy(), z.copy()
    want += other
    fused.bias_act(got, other, False)
    np.testing.assert_array_equal(got, want)


def test_the_caller_runs_the_first_part_and_waits_for_all(monkeypatch):
    """parallel.run: the calling thread runs the first range, the pool the others;
    results come back in order; a part that calls run again runs the same parts
    inline, in its own thread (no nested pools); an error in any part is raised only
    after every part has ended."""
    import threading
    import time

    parallel.set_num_threads(2)
    monkeypatch.setattr(parallel, "MAX_PARTS", 2)  # a machine of 2 CPUs
    main = threading.current_thread().name
    names = parallel.run(lambda a, b: (a, b, threading.current_thread().name), 10)
    assert [n[:2] for n in names] == [(0, 5), (5, 10)]
    assert names[0][2] == main and names[1][2].startswith("trainer-engine")
    inner = parallel.run(lambda a, b: parallel.run(
        lambda c, d: (c, d, threading.current_thread().name), b - a), 8)
    assert [[part[:2] for part in parts] for parts in inner] == [[(0, 2), (2, 4)]] * 2
    assert {part[2] for part in inner[0]} == {main}  # inline, in the outer part's thread
    assert {part[2] for part in inner[1]} == {names[1][2]}
    # whether a region is cut hangs on its shape alone, inside a part too
    assert parallel.splits(100)
    assert parallel.run(lambda a, b: parallel.splits(100), 8) == [True, True]

    ended = []

    def part(a, b):
        if a == 0:
            raise ValueError("first part failed")
        time.sleep(0.05)
        ended.append(b)

    with pytest.raises(ValueError, match="first part failed"):
        parallel.run(part, 4)
    assert ended == [4]  # the worker's part had ended before the error came out

    def late(a, b):
        if a > 0:
            raise KeyError("second part failed")
        return a

    with pytest.raises(KeyError):
        parallel.run(late, 4)


def test_a_small_model_never_loads_numba(tmp_path):
    """Loading Numba costs ~0.9 s: the quickstart's model must not need it."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from trainer.engine.kernels import fused\n"
            "z = np.ones((32, 64), np.float32)\n"
            "fused.bias_act(z, np.ones(64, np.float32), True)\n"
            "fused.relu_backward(z, z)\n"
            "w = np.ones((64, 128), np.float32)\n"
            "fused.adam_update(w, w.copy(), w.copy(), w.copy(), 0.9, 0.999, 1e-7, 0.1)\n"
            "fused.rmsprop_update(w, w.copy(), w.copy(), 0.9, 1e-7, 0.1)\n"
            "print('numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
