"""The convolution kernels of issue 28's second round: Winograd F(2×2,3×3)'s written-out
transforms (trainer/engine/kernels/winograd_transforms.py) against the matrices that
define them, on random shapes and edge tiles; the Winograd layer against
conv_reference at the classic CNN's channel counts (forward, dx, dW, db) and thread
invariance; max pooling's inference kernel (no argmax) against the training one."""

import numpy as np
import pytest

from trainer.engine.kernels import conv_reference as ref
from trainer.engine.kernels import parallel, winograd, winograd_transforms
from trainer.engine.kernels.conv import plan2d
from trainer.config.families import layers


@pytest.fixture(autouse=True)
def restore_threads():
    before = parallel.num_threads()
    yield
    parallel.set_num_threads(before)


def windows(x, pt, pl, th, tw, size, step):
    """(N·th·tw, size, size, C) windows of x at rows step·i - pt, zeros off the image."""
    n, h, w, c = x.shape
    xp = np.zeros((n, h + pt + step * th + size, w + pl + step * tw + size, c), x.dtype)
    xp[:, pt:pt + h, pl:pl + w] = x
    return np.stack([xp[b, step * i:step * i + size, step * j:step * j + size]
                     for b in range(n) for i in range(th) for j in range(tw)])


def slabs(tiles, c, dtype=np.float64):
    """A transformed array in the kernels' layout, filled with a sentinel."""
    return np.full((16, winograd_transforms.slab_rows(tiles), c), 7.0, dtype)


@pytest.mark.parametrize("seed", range(6))
def test_input_and_grad_transforms_match_the_matrices(seed):
    r = np.random.default_rng(seed)
    n, c = (int(v) for v in r.integers(1, 4, 2))
    h, w = (int(v) for v in r.integers(2, 9, 2))  # odd and even: windows across edges
    pt, pl = (int(v) for v in r.integers(0, 3, 2))
    th, tw = max(1, (h + 2 * pt - 1) // 2), max(1, (w + 2 * pl - 1) // 2)
    x = r.normal(size=(n, h, w, c))
    kern = winograd_transforms.kernels()
    V = slabs(n * th * tw, c)
    kern["input"](x, 0, n, pt, pl, th, tw, V)
    d = windows(x, pt, pl, th, tw, 4, 2)  # (tiles, 4, 4, c)
    want = np.einsum("ai,tijc,bj->abtc", winograd.BT, d, winograd.BT).reshape(16, -1, c)
    np.testing.assert_allclose(V[:, :n * th * tw], want, atol=1e-12)
    assert (V[:, n * th * tw:] == 7).all()  # the padding row is never written
    # grad: 2×2 tiles of an output gradient, zeros past an odd edge
    th2, tw2 = (h + 1) // 2, (w + 1) // 2
    D = slabs(n * th2 * tw2, c)
    kern["grad"](x, 0, n, th2, tw2, D)
    g = windows(x, 0, 0, th2, tw2, 2, 2)
    A = winograd.AT.T
    want = np.einsum("ai,tijc,bj->abtc", A, g, A).reshape(16, -1, c)
    np.testing.assert_allclose(D[:, :n * th2 * tw2], want, atol=1e-12)


@pytest.mark.parametrize("relu", [False, True])
def test_output_transform_matches_the_matrix_with_bias_and_relu(relu):
    r = np.random.default_rng(int(relu))
    n, ho, wo, k = 2, 5, 4, 3  # odd height: the last tiles' lower half is cut
    th, tw = (ho + 1) // 2, (wo + 1) // 2
    tiles = n * th * tw
    M = slabs(tiles, k)
    M[:, :tiles] = r.normal(size=(16, tiles, k))
    bias = r.normal(size=k)
    z = np.full((n, ho, wo, k), np.nan)
    winograd_transforms.kernels()["output"](M, 0, n, th, tw, z, bias, relu)
    y = np.einsum("ai,ijtk,bj->tabk", winograd.AT, M[:, :tiles].reshape(4, 4, tiles, k),
                  winograd.AT) + bias
    y = y.reshape(n, th, tw, 2, 2, k).transpose(0, 1, 3, 2, 4, 5).reshape(
        n, 2 * th, 2 * tw, k)[:, :ho, :wo]
    np.testing.assert_allclose(z, np.maximum(y, 0) if relu else y, atol=1e-12)


def test_output_transform_keeps_nan_through_relu():
    M = slabs(1, 2)
    M[:, :1] = 0.0
    M[0, 0, 0] = np.nan
    z = np.zeros((1, 2, 2, 2))
    winograd_transforms.kernels()["output"](M, 0, 1, 1, 1, z, np.zeros(2), True)
    assert np.isnan(z[0, 0, 0, 0]) and (z[..., 1] == 0).all()


def test_slab_rows_are_odd():
    assert [winograd_transforms.slab_rows(t) for t in (1, 2, 640, 641)] == [1, 3, 641, 641]


def _layer(x, filters, padding, dtype):
    layer = layers.get({"Conv2D": {"filters": filters, "kernel_size": 3, "padding": padding,
                                   "activation": "relu"}})
    layer.dtype = dtype
    layer.build(x.shape[1:], np.random.default_rng(0))
    layer.cast(dtype)
    return layer


@pytest.mark.parametrize("shape,filters,padding", [
    ((2, 8, 8, 32), 32, "valid"),   # the classic CNN's second layer, smaller
    ((3, 7, 7, 32), 64, "same"),    # its third (odd size: edge tiles)
    ((1, 5, 6, 5), 3, "same"),
])
def test_winograd_layer_matches_reference(monkeypatch, shape, filters, padding):
    monkeypatch.setenv("TRAINER_CONV_ALGO", "winograd")
    r = np.random.default_rng(sum(shape))
    x = r.normal(size=shape)
    layer = _layer(x, filters, padding, np.float64)
    W, b = r.normal(size=(3, 3, shape[-1], filters)), r.normal(size=filters)
    layer.set_weights([W, b])
    y, back = layer.forward(x, True)
    z = ref.conv2d(x, W, b, (1, 1), padding)
    np.testing.assert_allclose(y, np.maximum(z, 0), atol=1e-9)
    dy = r.normal(size=y.shape)
    layer.zero_grads()
    dx = back(dy)
    dz = dy * (z > 0)
    np.testing.assert_allclose(dx, ref.conv2d_transpose(dz, W, (1, 1), padding,
                                                        shape[1:3]), atol=1e-9)
    (ho, wo), pads = plan2d(shape[1:3], (3, 3), (1, 1), (1, 1), padding)
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    dW = np.stack([np.stack([np.einsum("nijc,nijk->ck", xp[:, p:p + ho, q:q + wo], dz)
                             for q in range(3)]) for p in range(3)])
    np.testing.assert_allclose(layer.grads["kernel"], dW, atol=1e-9)
    np.testing.assert_allclose(layer.grads["bias"], dz.sum(axis=(0, 1, 2)), atol=1e-9)


def test_winograd_layer_same_bits_on_any_thread_count(monkeypatch):
    monkeypatch.setenv("TRAINER_CONV_ALGO", "winograd")
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)  # a chunk per sample: 7 chunks
    r = np.random.default_rng(9)
    x = r.normal(size=(7, 9, 8, 32)).astype(np.float32)
    dy = r.normal(size=(7, 9, 8, 16)).astype(np.float32)
    results = []
    for threads in (1, 2, 3):
        parallel.set_num_threads(threads)
        layer = _layer(x, 16, "same", np.float32)
        y, back = layer.forward(x, True)
        dx = back(dy)
        results.append((y, dx, layer.grads["kernel"].copy(), layer.grads["bias"].copy()))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("seed", range(4))
def test_max_pool_inference_kernel_matches_training_one(seed):
    """Inference keeps no argmax: the same maxima bit for bit (ties, NaN, -inf
    padding), on any thread count; a backward asked for anyway is the training one."""
    from trainer.layers.pooling import max_pool
    r = np.random.default_rng(seed)
    pool = tuple(int(v) for v in r.integers(1, 4, 2))
    strides = tuple(int(v) for v in r.integers(1, 4, 2))
    padding = ["valid", "same"][seed % 2]
    x = r.integers(0, 4, (int(r.integers(1, 6)), 9, 8, 3)).astype(np.float32)
    x[0, 1, 1, 0] = np.nan
    out_hw, pads = plan2d(x.shape[1:3], pool, strides, (1, 1), padding)
    y_train, back_train = max_pool(x, pool, strides, out_hw, pads)
    for threads in (1, 2):
        parallel.set_num_threads(threads)
        y, back = max_pool(x, pool, strides, out_hw, pads, training=False)
        np.testing.assert_array_equal(y, y_train)
    dy = r.normal(size=y.shape).astype(np.float32)
    np.testing.assert_array_equal(back(dy), back_train(dy))


def test_max_pooling_layer_predicts_what_it_trains_on():
    layer = layers.get({"MaxPooling2D": {"pool_size": 2}})
    x = np.random.default_rng(1).normal(size=(3, 6, 6, 4)).astype(np.float32)
    layer.build(x.shape[1:], None)
    np.testing.assert_array_equal(layer.forward(x, False)[0], layer.forward(x, True)[0])


def _im2col_run(x, dy, threads, chunk_bytes, monkeypatch, **args):
    from trainer.layers.conv import ConvPlan
    monkeypatch.setattr(ConvPlan, "CHUNK_BYTES", chunk_bytes)
    parallel.set_num_threads(threads)
    layer = layers.get({"Conv2D": {"filters": dy.shape[-1], "kernel_size": 3,
                                   "activation": "relu", **args}})
    layer.build(x.shape[1:], np.random.default_rng(0))
    y, back = layer.forward(x, True)
    dx = back(dy)
    return y, dx, layer.grads["kernel"].copy(), layer.grads["bias"].copy()


@pytest.mark.parametrize("args", [{"padding": "same"}, {"strides": 2},
                                  {"dilation_rate": 2, "padding": "same"}])
def test_im2col_gradients_same_bits_on_any_thread_count(monkeypatch, args):
    """The im2col path's chunks and their weight-gradient groups follow from the
    shapes alone: 1, 2 or 3 threads give the same bits (dW and db included); another
    chunk size changes only the rounding of the sums, never y or dx."""
    monkeypatch.setenv("TRAINER_CONV_ALGO", "im2col")
    r = np.random.default_rng(11)
    x = r.normal(size=(13, 9, 8, 3)).astype(np.float32)
    layer = layers.get({"Conv2D": {"filters": 4, "kernel_size": 3, **args}})
    out = layer.build(x.shape[1:], np.random.default_rng(0))
    dy = r.normal(size=(13, *out)).astype(np.float32)
    one = _im2col_run(x, dy, 1, 1, monkeypatch, **args)  # a chunk per sample
    for threads in (2, 3):
        for a, b in zip(one, _im2col_run(x, dy, threads, 1, monkeypatch, **args)):
            assert a.dtype == b.dtype == np.float32
            np.testing.assert_array_equal(a, b)
    whole = _im2col_run(x, dy, 2, 1 << 30, monkeypatch, **args)
    for k, (a, b) in enumerate(zip(one, whole)):
        if k < 2:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_inference_takes_winograd_from_32_channels(monkeypatch):
    """A forward without backward takes Winograd from MIN_CHANNELS_INFERENCE (32)
    channels, a training forward from MIN_CHANNELS (64); both give the convolution."""
    monkeypatch.delenv("TRAINER_CONV_ALGO", raising=False)
    monkeypatch.setenv("TRAINER_CONV_DIRECT", "off")  # its rule: tests/test_direct_conv.py
    taken = []
    real = winograd.forward
    monkeypatch.setattr(winograd, "forward", lambda *a: taken.append(1) or real(*a))
    x = np.random.default_rng(2).normal(size=(2, 6, 6, 32)).astype(np.float32)
    layer = _layer(x, 32, "same", np.float32)
    y_infer = layer.forward(x, False)[0]
    assert taken == [1]
    y_train = layer.forward(x, True)[0]
    assert taken == [1]  # im2col
    np.testing.assert_allclose(y_infer, y_train, rtol=1e-5, atol=1e-5)
    assert not winograd.use((3, 3), (1, 1), (1, 1), 2, 16, 32, training=False)
    assert winograd.use((3, 3), (1, 1), (1, 1), 2, 64, 64, training=True)
