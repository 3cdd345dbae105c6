"""Winograd F(2×2,3×3) convolution (trainer/engine/kernels/winograd.py): against the
plain-loop reference on random shapes, paddings and batch sizes (forward, dx, dW, db),
float64 finite differences through the shared helper, thread invariance (bit for bit)
and chunk invariance, the float32 tolerance, and the dispatch from Conv2D."""

import numpy as np
import pytest

from gradcheck import check_layer
from trainer.engine.kernels import conv_reference as ref
from trainer.engine.kernels import parallel, winograd
from trainer.engine.kernels.conv import pad2d, plan2d
from trainer.errors import ConfigError
from trainer.config.families import layers

NORMAL = {"random_normal": {"stddev": 0.5}}


@pytest.fixture(autouse=True)
def restore_threads():
    before = parallel.num_threads()
    yield
    parallel.set_num_threads(before)


@pytest.fixture
def forced(monkeypatch):
    monkeypatch.setenv("TRAINER_CONV_ALGO", "winograd")


def conv(x, filters, dtype=np.float64, **args):
    layer = layers.get({"Conv2D": {"filters": filters, "kernel_size": 3, **args}})
    layer.dtype = dtype
    layer.build(x.shape[1:], np.random.default_rng(0))
    layer.cast(dtype)
    return layer


def reference_grads(x, W, dy, padding):
    """dx, dW, db of sum(dy · conv(x)) from the definitions: dx is the transposed
    convolution (conv_reference), dW[p, q] the patch-weighted sum of dy."""
    h, w = x.shape[1:3]
    dx = ref.conv2d_transpose(dy, W, (1, 1), padding, (h, w))
    (ho, wo), pads = plan2d((h, w), (3, 3), (1, 1), (1, 1), padding)
    xp = pad2d(x, pads)
    dW = np.stack([np.stack([np.einsum("nijc,nijk->ck", xp[:, p:p + ho, q:q + wo], dy)
                             for q in range(3)]) for p in range(3)])
    return dx, dW, dy.reshape(-1, dy.shape[-1]).sum(axis=0)


@pytest.mark.parametrize("seed", range(10))
def test_matches_reference_on_random_shapes(seed, forced):
    r = np.random.default_rng(seed)
    padding = ["valid", "same"][seed % 2]
    n, c, k = (int(v) for v in r.integers(1, 6, 3))
    h, w = (int(v) for v in r.integers(3, 10, 2))  # odd and even sizes: partial tiles
    x = r.normal(size=(n, h, w, c))
    layer = conv(x, k, padding=padding)
    W, b = r.normal(size=(3, 3, c, k)), r.normal(size=k)
    layer.set_weights([W, b])
    y, back = layer.forward(x, True)
    np.testing.assert_allclose(y, ref.conv2d(x, W, b, (1, 1), padding), atol=1e-10)
    dy = r.normal(size=y.shape)
    layer.zero_grads()
    dx = back(dy)
    want_dx, want_dW, want_db = reference_grads(x, W, dy, padding)
    np.testing.assert_allclose(dx, want_dx, atol=1e-10)
    np.testing.assert_allclose(layer.grads["kernel"], want_dW, atol=1e-10)
    np.testing.assert_allclose(layer.grads["bias"], want_db, atol=1e-10)


@pytest.mark.parametrize("args", [
    {"padding": "valid"},
    {"padding": "same", "activation": "tanh"},
    {"padding": "same", "use_bias": False},
    {"padding": "valid", "activation": "sigmoid"},
])
def test_gradients_by_finite_differences(rng, args, forced):
    x = rng.normal(size=(2, 6, 5, 3))
    check_layer(layers.get({"Conv2D": {"filters": 2, "kernel_size": 3,
                                       "kernel_initializer": NORMAL,
                                       "bias_initializer": {"constant": 0.1}, **args}}), x)


def test_relu_gradient_away_from_kink(rng, forced):
    x = rng.normal(size=(2, 7, 7, 2))
    layer = layers.get({"Conv2D": {"filters": 2, "kernel_size": 3, "padding": "same",
                                   "activation": "relu", "kernel_initializer": NORMAL,
                                   "bias_initializer": {"constant": 0.05}}})
    assert (check_layer(layer, x, h=1e-7) >= 0).all()


def _run(x, dy, threads, chunk_bytes, monkeypatch):
    monkeypatch.setattr(winograd, "CHUNK_BYTES", chunk_bytes)
    parallel.set_num_threads(threads)
    layer = layers.get({"Conv2D": {"filters": 5, "kernel_size": 3, "padding": "same",
                                   "activation": "relu"}})
    layer.build(x.shape[1:], np.random.default_rng(0))
    y, back = layer.forward(x, True)
    dx = back(dy)
    return y, dx, layer.grads["kernel"].copy(), layer.grads["bias"].copy()


def test_thread_count_changes_no_number(monkeypatch, forced):
    """Chunks and their dW groups follow from the shapes alone: 1, 2 or 3 threads give
    the same bits."""
    r = np.random.default_rng(3)
    x = r.normal(size=(11, 9, 8, 4)).astype(np.float32)
    dy = r.normal(size=(11, 9, 8, 5)).astype(np.float32)
    one = _run(x, dy, 1, 1, monkeypatch)  # one sample per chunk: 11 chunks, 8 groups
    for threads in (2, 3):
        for a, b in zip(one, _run(x, dy, threads, 1, monkeypatch)):
            assert a.dtype == b.dtype == np.float32
            np.testing.assert_array_equal(a, b)


def test_chunk_size_changes_only_rounding(monkeypatch, forced):
    r = np.random.default_rng(4)
    x = r.normal(size=(9, 8, 8, 4)).astype(np.float32)
    dy = r.normal(size=(9, 8, 8, 5)).astype(np.float32)
    whole = _run(x, dy, 2, 1 << 30, monkeypatch)
    for chunk in (1, 5000):
        for a, b in zip(whole, _run(x, dy, 2, chunk, monkeypatch)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_float32_within_stated_tolerance(padding, forced):
    """float32 Winograd within 1e-5 of the output's scale of the float64 result
    (the tolerance the module doc states; measured ~3e-7)."""
    r = np.random.default_rng(5)
    x = r.normal(size=(3, 11, 10, 32))
    W = r.normal(size=(3, 3, 32, 32)) * np.sqrt(2 / 288)
    b = r.normal(size=32) * 0.1
    want = ref.conv2d(x, W, b, (1, 1), padding)
    layer = conv(x.astype(np.float32), 32, np.float32, padding=padding)
    layer.set_weights([W.astype(np.float32), b.astype(np.float32)])
    y, back = layer.forward(x.astype(np.float32), True)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, want, atol=1e-5 * np.abs(want).max())
    dy = r.normal(size=y.shape)
    dx = back(dy.astype(np.float32))
    want_dx, want_dW, _ = reference_grads(x, W, dy, padding)
    np.testing.assert_allclose(dx, want_dx, atol=1e-5 * np.abs(want_dx).max())
    np.testing.assert_allclose(layer.grads["kernel"], want_dW,
                               atol=1e-5 * np.abs(want_dW).max())


def test_non_contiguous_input(forced):
    r = np.random.default_rng(7)
    x = r.normal(size=(3, 5, 6, 2)).transpose(0, 2, 1, 3)  # a view, not C-contiguous
    layer = conv(x, 3, padding="same")
    W, b = layer.get_weights()
    y, back = layer.forward(x, True)
    np.testing.assert_allclose(y, ref.conv2d(x, W, b, (1, 1), "same"), atol=1e-10)
    dy = r.normal(size=y.shape)
    np.testing.assert_allclose(back(dy), reference_grads(x, W, dy, "same")[0], atol=1e-10)


def test_first_layer_skips_its_input_gradient(forced):
    x = np.random.default_rng(0).normal(size=(3, 6, 6, 2)).astype(np.float32)
    layer = conv(x, 2, np.float32)
    layer.needs_input_grad = False
    y, back = layer.forward(x, True)
    assert back(np.ones_like(y)) is None
    assert np.abs(layer.grads["kernel"]).sum() > 0


def _path(monkeypatch, filters, channels, **args):
    """Which path a Conv2D forward takes: 'winograd' or 'im2col'."""
    taken = []
    real = winograd.forward
    monkeypatch.setattr(winograd, "forward",
                        lambda *a: taken.append(1) or real(*a))
    x = np.zeros((2, 8, 8, channels), np.float32)
    layer = layers.get({"Conv2D": {"filters": filters, **args}})
    layer.build(x.shape[1:], np.random.default_rng(0))
    layer.forward(x, False)
    return "winograd" if taken else "im2col"


def test_dispatch_by_shape_and_setting(monkeypatch):
    monkeypatch.delenv("TRAINER_CONV_ALGO", raising=False)
    monkeypatch.setenv("TRAINER_CONV_DIRECT", "off")  # its rule: tests/test_direct_conv.py
    big = winograd.MIN_CHANNELS
    assert _path(monkeypatch, big, big, kernel_size=3, padding="same") == "winograd"
    assert _path(monkeypatch, big, big, kernel_size=3) == "winograd"
    assert _path(monkeypatch, big, 3, kernel_size=3) == "im2col"  # first layer
    assert _path(monkeypatch, big, big, kernel_size=3, strides=2) == "im2col"
    assert _path(monkeypatch, big, big, kernel_size=3, dilation_rate=2) == "im2col"
    assert _path(monkeypatch, big, big, kernel_size=[3, 2]) == "im2col"
    monkeypatch.setenv("TRAINER_CONV_ALGO", "im2col")
    assert _path(monkeypatch, big, big, kernel_size=3) == "im2col"
    monkeypatch.setenv("TRAINER_CONV_ALGO", "winograd")
    assert _path(monkeypatch, 2, 3, kernel_size=3) == "winograd"
    assert _path(monkeypatch, 2, 3, kernel_size=3, strides=2) == "im2col"
    monkeypatch.setenv("TRAINER_CONV_ALGO", "fast")
    with pytest.raises(ConfigError, match="TRAINER_CONV_ALGO: expected one of auto, "
                                          "winograd, im2col, got 'fast'"):
        winograd.algo()


def test_conv1d_keeps_im2col(monkeypatch):
    monkeypatch.setenv("TRAINER_CONV_ALGO", "winograd")
    called = []
    monkeypatch.setattr(winograd, "forward", lambda *a: called.append(1))
    layer = layers.get({"Conv1D": {"filters": 2, "kernel_size": 3}})
    layer.build((8, 2), np.random.default_rng(0))
    y, _ = layer.forward(np.zeros((2, 8, 2), np.float32), False)
    assert y.shape == (2, 6, 2) and not called


def test_kernel_transform_round_trip():
    """dW = Gᵀ dU G is the adjoint of U = G g Gᵀ: <U(g), dU> = <g, dW(dU)>."""
    r = np.random.default_rng(6)
    g, dU = r.normal(size=(3, 3, 2, 3)), r.normal(size=(16, 2, 3))
    np.testing.assert_allclose((winograd.transform_kernel(g) * dU).sum(),
                               (g * winograd.kernel_gradient(dU)).sum())
