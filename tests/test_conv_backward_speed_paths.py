"""The convolution backward paths of issue 28's ResNet50 step: 1×1 convolutions'
``ConvPlan.backward_1x1`` (strided or few rows per chunk) and Winograd's block-wise
weight gradient (``winograd.Blocks``) with its Numba kernel transforms, each against
conv_reference / the definitions on random shapes (forward, dx, dW, db), by finite
differences, and for thread invariance."""

import numpy as np
import pytest

from gradcheck import check_layer
from trainer.engine.kernels import conv_reference as ref
from trainer.engine.kernels import parallel, winograd
from trainer.engine.kernels.conv import pad2d, plan2d
from trainer.config.families import layers
from trainer.layers.conv import ConvPlan

NORMAL = {"random_normal": {"stddev": 0.5}}


@pytest.fixture(autouse=True)
def restore_threads():
    before = parallel.num_threads()
    yield
    parallel.set_num_threads(before)


def layer_for(x, filters, kernel, dtype=np.float64, **args):
    layer = layers.get({"Conv2D": {"filters": filters, "kernel_size": kernel, **args}})
    layer.dtype = dtype
    layer.build(x.shape[1:], np.random.default_rng(0))
    layer.cast(dtype)
    return layer


def reference_grads(x, W, dy, strides, padding):
    """dx, dW, db of sum(dy · conv(x)) from the definitions."""
    kh, kw = W.shape[:2]
    (ho, wo), pads = plan2d(x.shape[1:3], (kh, kw), strides, (1, 1), padding)
    dx = ref.conv2d_transpose(dy, W, strides, padding, x.shape[1:3])
    xp = pad2d(x, pads)
    sh, sw = strides
    dW = np.stack([np.stack([
        np.einsum("nijc,nijk->ck",
                  xp[:, p:p + sh * (ho - 1) + 1:sh, q:q + sw * (wo - 1) + 1:sw], dy)
        for q in range(kw)]) for p in range(kh)])
    return dx, dW, dy.reshape(-1, dy.shape[-1]).sum(axis=0)


@pytest.fixture
def spy_1x1(monkeypatch):
    """Counts calls of ConvPlan.backward_1x1."""
    calls = []
    real = ConvPlan.backward_1x1
    monkeypatch.setattr(ConvPlan, "backward_1x1",
                        lambda self, *a: calls.append(1) or real(self, *a))
    return calls


ACTIVATIONS = ["linear", "relu", "tanh"]


@pytest.mark.parametrize("seed", range(8))
def test_1x1_backward_matches_reference(seed, spy_1x1):
    r = np.random.default_rng(seed)
    n = int(r.integers(1, 5))
    c, f = (int(v) for v in r.integers(1, 7, 2))
    h, w = (int(v) for v in r.integers(1, 9, 2))
    strides = (int(r.integers(1, 4)), int(r.integers(1, 4)))
    padding = ["valid", "same"][seed % 2]
    activation = ACTIVATIONS[seed % 3]
    x = r.normal(size=(n, h, w, c))
    if seed % 4 == 3:  # a view, not C-contiguous
        x = r.normal(size=(n, w, h, c)).transpose(0, 2, 1, 3)
    layer = layer_for(x, f, 1, strides=strides, padding=padding, activation=activation)
    W, b = r.normal(size=(1, 1, c, f)), r.normal(size=f)
    layer.set_weights([W, b])
    y, back = layer.forward(x, True)
    z = ref.conv2d(x, W, b, strides, padding)
    want = {"linear": z, "relu": np.maximum(z, 0), "tanh": np.tanh(z)}[activation]
    np.testing.assert_allclose(y, want, atol=1e-10)
    dy = r.normal(size=y.shape)
    dz = {"linear": dy, "relu": dy * (z > 0), "tanh": dy * (1 - np.tanh(z) ** 2)}[activation]
    layer.zero_grads()
    dx = back(dy)
    want_dx, want_dW, want_db = reference_grads(x, W, dz, strides, padding)
    np.testing.assert_allclose(dx, want_dx, atol=1e-10)
    np.testing.assert_allclose(layer.grads["kernel"], want_dW, atol=1e-10)
    np.testing.assert_allclose(layer.grads["bias"], want_db, atol=1e-10)
    assert spy_1x1  # small maps: always the 1×1 path


def test_1x1_rule_by_shape(spy_1x1):
    """Stride-1 1×1 convolutions with long chunks keep the chunked backward; strided
    ones and short chunks take backward_1x1; both match the reference."""
    r = np.random.default_rng(11)
    for h, strides, taken in [(24, 1, False), (24, 2, True), (8, 1, True)]:
        spy_1x1.clear()
        x = r.normal(size=(2, h, h, 3))
        layer = layer_for(x, 4, 1, strides=strides, use_bias=False)
        W = layer.get_weights()[0]
        y, back = layer.forward(x, True)
        dy = r.normal(size=y.shape)
        layer.zero_grads()
        dx = back(dy)
        assert bool(spy_1x1) == taken, (h, strides)
        want_dx, want_dW, _ = reference_grads(x, W, dy, (strides, strides), "valid")
        np.testing.assert_allclose(dx, want_dx, atol=1e-10)
        np.testing.assert_allclose(layer.grads["kernel"], want_dW, atol=1e-10)


@pytest.mark.parametrize("args", [
    {"strides": 2, "activation": "tanh"},
    {"strides": [1, 3], "activation": "sigmoid", "padding": "same"},
    {"strides": 1, "use_bias": False},
])
def test_1x1_gradients_by_finite_differences(rng, args):
    x = rng.normal(size=(2, 5, 7, 3))
    check_layer(layers.get({"Conv2D": {"filters": 2, "kernel_size": 1,
                                       "kernel_initializer": NORMAL,
                                       "bias_initializer": {"constant": 0.1}, **args}}), x)


def test_1x1_first_layer_skips_its_input_gradient(spy_1x1):
    x = np.random.default_rng(0).normal(size=(3, 6, 6, 2))
    layer = layer_for(x, 3, 1, strides=2)
    layer.needs_input_grad = False
    y, back = layer.forward(x, True)
    assert back(np.ones_like(y)) is None
    assert spy_1x1 and np.abs(layer.grads["kernel"]).sum() > 0


def test_conv1d_kernel_1_strided(spy_1x1):
    r = np.random.default_rng(5)
    x = r.normal(size=(3, 9, 4))
    layer = layers.get({"Conv1D": {"filters": 3, "kernel_size": 1, "strides": 2}})
    layer.dtype = np.float64
    layer.build(x.shape[1:], r)
    W, b = layer.get_weights()
    y, back = layer.forward(x, True)
    dy = r.normal(size=y.shape)
    layer.zero_grads()
    dx = back(dy)
    want_dx, want_dW, want_db = reference_grads(x[:, None], W[None], dy[:, None], (1, 2),
                                                "valid")
    np.testing.assert_allclose(dx, want_dx[:, 0], atol=1e-10)
    np.testing.assert_allclose(layer.grads["kernel"], want_dW[0], atol=1e-10)
    assert spy_1x1


def _run(x, dy, threads, filters, kernel, **args):
    parallel.set_num_threads(threads)
    layer = layers.get({"Conv2D": {"filters": filters, "kernel_size": kernel,
                                   "activation": "relu", **args}})
    layer.build(x.shape[1:], np.random.default_rng(0))
    y, back = layer.forward(x, True)
    dx = back(dy)
    return y, dx, layer.grads["kernel"].copy(), layer.grads["bias"].copy()


def test_1x1_forward_chunks_take_long_rows():
    """On the 1×1 path the forward's chunks hold at least LONG_ROWS rows (several
    chunks per part here: 200 rows a sample), and the output is unchanged."""
    r = np.random.default_rng(9)
    x = r.normal(size=(11, 10, 20, 3))
    plan = ConvPlan(x, (1, 1), (1, 1), (1, 1), ((0, 0), (0, 0)), (10, 20))
    assert plan.one_by_one and plan.per_chunk == -(-ConvPlan.LONG_ROWS // 200)
    layer = layer_for(x, 4, 1, activation="relu")
    W, b = layer.get_weights()
    y, _ = layer.forward(x, True)
    np.testing.assert_allclose(y, np.maximum(ref.conv2d(x, W, b), 0), atol=1e-10)


@pytest.mark.parametrize("strides,hw", [(1, (7, 6)), (2, (7, 6)), (1, (10, 20))])
def test_1x1_thread_count_changes_no_number(strides, hw, spy_1x1):
    r = np.random.default_rng(3)
    x = r.normal(size=(11, *hw, 48)).astype(np.float32)
    out = [(v + strides - 1) // strides for v in hw]
    dy = r.normal(size=(11, *out, 40)).astype(np.float32)
    one = _run(x, dy, 1, 40, 1, strides=strides)
    for threads in (2, 3):
        for a, b in zip(one, _run(x, dy, threads, 40, 1, strides=strides)):
            assert a.dtype == b.dtype == np.float32
            np.testing.assert_array_equal(a, b)
    assert spy_1x1


# Winograd's backward: block-wise weight gradient, Numba kernel transforms

@pytest.fixture
def forced(monkeypatch):
    monkeypatch.setenv("TRAINER_CONV_ALGO", "winograd")


@pytest.mark.parametrize("seed", range(8))
def test_winograd_blocks_match_reference(seed, forced, monkeypatch):
    """Several blocks (one chunk each, or two), one block, and the chunked dW (seeds
    6, 7) give the reference."""
    r = np.random.default_rng(seed)
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)  # one sample per chunk
    monkeypatch.setattr(winograd, "BLOCK_BYTES", [1, 1 << 30, 1][seed % 3])
    monkeypatch.setattr(winograd, "PARTIAL_SHARE", 0 if seed >= 6 else 1 << 30)
    padding = ["valid", "same"][seed % 2]
    n, c, k = (int(v) for v in r.integers(1, 6, 3))
    h, w = (int(v) for v in r.integers(3, 10, 2))
    x = r.normal(size=(n, h, w, c))
    layer = layer_for(x, k, 3, padding=padding, activation=["linear", "relu"][seed % 2])
    W, b = r.normal(size=(3, 3, c, k)), r.normal(size=k)
    layer.set_weights([W, b])
    y, back = layer.forward(x, True)
    z = ref.conv2d(x, W, b, (1, 1), padding)
    np.testing.assert_allclose(y, z if seed % 2 == 0 else np.maximum(z, 0), atol=1e-10)
    dy = r.normal(size=y.shape)
    dz = dy if seed % 2 == 0 else dy * (z > 0)
    layer.zero_grads()
    dx = back(dy)
    want_dx, want_dW, want_db = reference_grads(x, W, dz, (1, 1), padding)
    np.testing.assert_allclose(dx, want_dx, atol=1e-10)
    np.testing.assert_allclose(layer.grads["kernel"], want_dW, atol=1e-10)
    np.testing.assert_allclose(layer.grads["bias"], want_db, atol=1e-10)


def test_blocks_by_shape(monkeypatch):
    """Blocks hold whole chunks, an even number when more than one fits, and cover the
    batch in order."""
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)
    tiling = winograd.Tiling(11, (8, 8), (8, 8), 4, 4, 4)  # 16 tiles × 8 ch × 64 B a sample
    chunk = 16 * 16 * 8 * 4
    for per, want in [(1, 1), (2, 2), (3, 2), (5, 4), (100, 11)]:
        monkeypatch.setattr(winograd, "BLOCK_BYTES", per * chunk)
        blocks = winograd.Blocks(tiling, 4, 4, 4)
        assert blocks.ranges[0] == (0, min(want, 11))
        assert [b for r in blocks.ranges for b in range(*r)] == list(range(11))
        assert blocks.max_tiles == min(want, 11) * 16
    # chunked when a chunk's slabs (tiles × (C + K)) are ≥ PARTIAL_SHARE × C × K
    assert winograd.Blocks(tiling, 4, 4, 4).chunked  # 16 × 8 against 2 × 16
    assert not winograd.Blocks(tiling, 64, 64, 4).chunked  # 16 × 128 against 2 × 4096


@pytest.mark.parametrize("block_bytes,share", [(1, 1 << 30), (1 << 30, 1 << 30), (1, 0)])
def test_winograd_thread_count_changes_no_number(block_bytes, share, forced, monkeypatch):
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)
    monkeypatch.setattr(winograd, "BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(winograd, "PARTIAL_SHARE", share)
    r = np.random.default_rng(8)
    x = r.normal(size=(7, 7, 6, 5)).astype(np.float32)
    dy = r.normal(size=(7, 7, 6, 6)).astype(np.float32)
    one = _run(x, dy, 1, 6, 3, padding="same")
    for threads in (2, 3):
        for a, b in zip(one, _run(x, dy, threads, 6, 3, padding="same")):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernel_transforms_match_the_matrices(dtype):
    r = np.random.default_rng(2)
    g = r.normal(size=(3, 3, 70, 5)).astype(dtype)  # 70 channels: several parts
    G = winograd.G
    want = np.einsum("ap,pqck,bq->abck", G, g.astype(np.float64), G).reshape(16, 70, 5)
    U = winograd.transform_kernel(g)
    assert U.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(U, want, atol=tol)
    dU = r.normal(size=(16, 70, 5)).astype(dtype)
    want = np.einsum("ap,abck,bq->pqck", G, dU.astype(np.float64).reshape(4, 4, 70, 5), G)
    np.testing.assert_allclose(winograd.kernel_gradient(dU), want, atol=tol)
    # the input gradient's kernel (flipped, in/out swapped) is U's points permuted
    flipped = winograd.transform_kernel(np.ascontiguousarray(
        g[::-1, ::-1].transpose(0, 1, 3, 2)))
    np.testing.assert_allclose(np.stack([U[winograd.FLIP[p]].T for p in range(16)]),
                               flipped, atol=tol)


def test_kernel_transforms_thread_invariant(monkeypatch):
    monkeypatch.setattr(winograd, "KERNEL_SPLIT", 1)  # split even a small kernel
    r = np.random.default_rng(4)
    g = r.normal(size=(3, 3, 9, 4)).astype(np.float32)
    dU = r.normal(size=(16, 9, 4)).astype(np.float32)
    parallel.set_num_threads(1)
    one = winograd.transform_kernel(g), winograd.kernel_gradient(dU)
    parallel.set_num_threads(2)
    two = winograd.transform_kernel(g), winograd.kernel_gradient(dU)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
