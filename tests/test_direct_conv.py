"""Direct convolution (trainer/engine/kernels/direct_conv.py): forward (bias, relu),
dW and db against the plain-loop reference (conv_reference) on random shapes, strides,
paddings, dilations and batch sizes in float64; the float32 tolerance; thread, block
and batch invariance (bit for bit); float64 finite differences of the layer's weight
gradients through the shared helper; the dispatch from Conv2D. The AVX2 block:
test_direct_conv_avx2.py."""

import numpy as np
import pytest

from gradcheck import check_layer
from trainer.engine.kernels import conv_reference as ref
from trainer.engine.kernels import direct_conv, parallel
from trainer.engine.kernels.conv import plan2d
from trainer.errors import ConfigError
from trainer.config.families import layers


@pytest.fixture(autouse=True)
def restore_threads():
    before = parallel.num_threads()
    yield
    parallel.set_num_threads(before)


def reference(x, W, b, relu, strides, padding, dilation, dy):
    """(y, dW, db) from the definitions: y by conv_reference.conv2d; dW[p, q, c] as the
    reference convolution of x with the one-hot kernel of tap (p, q, c) (the input
    that tap sees at every output pixel) times dz; db the sum of dz."""
    x64, W64 = x.astype(np.float64), W.astype(np.float64)
    b64 = None if b is None else b.astype(np.float64)
    y = ref.conv2d(x64, W64, b64, strides, padding, dilation)
    if relu:
        y = np.maximum(y, 0)
    dz = dy.astype(np.float64) * (y > 0) if relu else dy.astype(np.float64)
    kh, kw, c, f = W.shape
    dW = np.zeros((kh, kw, c, f))
    for p in range(kh):
        for q in range(kw):
            for ch in range(c):
                one = np.zeros((kh, kw, c, 1))
                one[p, q, ch, 0] = 1
                seen = ref.conv2d(x64, one, None, strides, padding, dilation)[..., 0]
                dW[p, q, ch] = np.einsum("nij,nijf->f", seen, dz)
    return y, dW, dz.sum(axis=(0, 1, 2))


def random_case(seed, dtype=np.float64):
    r = np.random.default_rng(seed)
    kh, kw = (int(v) for v in r.integers(1, 4, 2))
    c = int(r.integers(1, 6))
    if kh * kw * c < direct_conv.KB:
        c = -(-direct_conv.KB // (kh * kw))
    strides, dilation = (1, 1), (1, 1)
    if seed % 3 == 1:
        strides = tuple(int(v) for v in r.integers(1, 3, 2))
    elif seed % 3 == 2:
        dilation = tuple(int(v) for v in r.integers(1, 3, 2))
    padding = ["valid", "same"][seed % 2]
    n, h = int(r.integers(1, 4)), int(r.integers(kh * 2, 10))
    f = int(r.integers(direct_conv.FB, 2 * direct_conv.FB + 8))  # overlapping blocks
    while True:  # at least PB output pixels
        w = int(r.integers(1, 20))
        out_hw, pads = plan2d((h, w), (kh, kw), strides, dilation, padding)
        if out_hw[0] * out_hw[1] >= direct_conv.PB:
            break
    x = r.normal(size=(n, h, w, c)).astype(dtype)
    W = r.normal(size=(kh, kw, c, f)).astype(dtype)
    b = None if seed % 4 == 3 else r.normal(size=f).astype(dtype)
    dy = r.normal(size=(n, *out_hw, f)).astype(dtype)
    return x, W, b, strides, dilation, padding, out_hw, pads, dy


@pytest.mark.parametrize("seed", range(8))
def test_matches_reference_on_random_shapes(seed):
    x, W, b, strides, dilation, padding, out_hw, pads, dy = random_case(seed)
    for relu in (False, True):
        y = direct_conv.forward(x, W, b, relu, pads, strides, dilation, out_hw)
        dW, db = direct_conv.weight_grad(x, dy, y if relu else None, W.shape, pads,
                                         strides, dilation)
        want = reference(x, W, b, relu, strides, padding, dilation, dy)
        for got, exp in zip((y, dW, db), want):
            assert got.dtype == np.float64 and got.shape == exp.shape
            np.testing.assert_allclose(got, exp, rtol=1e-12, atol=1e-11)


def transposed(dz, W, pads, dilation, hw):
    """dx of sum(dz · conv(x)) for stride 1, from the definition: every output pixel's
    dz row sent back through each tap to the input pixel it read; the padding cut."""
    n, ho, wo, _ = dz.shape
    kh, kw, c, _ = W.shape
    (pt, pb), (pl, pr) = pads
    dxp = np.zeros((n, hw[0] + pt + pb, hw[1] + pl + pr, c))
    for p in range(kh):
        for q in range(kw):
            r, s = p * dilation[0], q * dilation[1]
            dxp[:, r:r + ho, s:s + wo] += dz @ W[p, q].T
    return dxp[:, pt:pt + hw[0], pl:pl + hw[1]]


@pytest.mark.parametrize("seed", range(4))
def test_input_gradient_matches_reference(seed):
    """dx (stride 1, any dilation and padding) by the forward kernel on dz: against
    the definition, and against conv_reference's transposed convolution (dilation 1)."""
    r = np.random.default_rng(100 + seed)
    kh, kw = (int(v) for v in r.integers(1, 4, 2))
    dilation = (1, 1) if seed < 2 else tuple(int(v) for v in r.integers(1, 3, 2))
    padding = ["valid", "same"][seed % 2]
    n, c, f = int(r.integers(1, 4)), int(r.integers(32, 40)), int(r.integers(32, 40))
    h, w = int(r.integers(kh * 2 + 2, 11)), int(r.integers(kw * 2 + 2, 11))
    out_hw, pads = plan2d((h, w), (kh, kw), (1, 1), dilation, padding)
    x, W = r.normal(size=(n, h, w, c)), r.normal(size=(kh, kw, c, f))
    dy = r.normal(size=(n, *out_hw, f))
    for relu in (False, True):
        y = direct_conv.forward(x, W, None, relu, pads, (1, 1), dilation, out_hw)
        dW, db, dx = direct_conv.backward(x, dy, y if relu else None, W, pads, (1, 1),
                                          dilation, True)
        want = reference(x, W, None, relu, (1, 1), padding, dilation, dy)
        dz = dy * (want[0] > 0) if relu else dy
        np.testing.assert_allclose(dx, transposed(dz, W, pads, dilation, (h, w)),
                                   rtol=1e-12, atol=1e-11)
        if dilation == (1, 1):
            np.testing.assert_allclose(dx, ref.conv2d_transpose(dz, W, (1, 1), padding,
                                                                (h, w)), atol=1e-11)
        np.testing.assert_allclose(dW, want[1], rtol=1e-12, atol=1e-11)
        np.testing.assert_allclose(db, want[2], rtol=1e-12, atol=1e-11)


def test_relu_keeps_nan_and_masks_its_gradient():
    """relu keeps a NaN pre-activation (as np.maximum); its gradient is dy · (y > 0),
    so an inf gradient where y ≤ 0 gives NaN (as NumPy)."""
    x, W, b, strides, dilation, padding, out_hw, pads, dy = random_case(4, np.float32)
    x[0, 2, 3, 0] = np.nan
    y = direct_conv.forward(x, W, b, True, pads, strides, dilation, out_hw)
    want = reference(x, W, b, True, strides, padding, dilation, dy)[0]
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    assert np.isnan(y).any()
    x[0, 2, 3, 0] = 0
    y = direct_conv.forward(x, W, b, True, pads, strides, dilation, out_hw)
    dy[0, 0, 0] = np.inf
    dW, db = direct_conv.weight_grad(x, dy, y, W.shape, pads, strides, dilation)
    with np.errstate(invalid="ignore"):
        want_db = (dy * (y > 0)).sum(axis=(0, 1, 2))
    np.testing.assert_array_equal(np.isnan(db), np.isnan(want_db))
    np.testing.assert_array_equal(np.isinf(db), np.isinf(want_db))
    assert np.isnan(db).any() and np.isinf(db).any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_float32_within_stated_tolerance(seed):
    """float32 within 1e-5 of the output's scale of the float64 result (module doc;
    measured ~4e-7)."""
    x, W, b, strides, dilation, padding, out_hw, pads, dy = random_case(seed, np.float32)
    y = direct_conv.forward(x, W, b, True, pads, strides, dilation, out_hw)
    dW, db = direct_conv.weight_grad(x, dy, y, W.shape, pads, strides, dilation)
    want = reference(x, W, b, True, strides, padding, dilation, dy)
    for got, exp in zip((y, dW, db), want):
        assert got.dtype == np.float32
        scale = np.abs(exp).max()
        np.testing.assert_allclose(got, exp, rtol=0, atol=1e-5 * scale)


def _both(x, W, b, pads, out_hw, dy, threads):
    parallel.set_num_threads(threads)
    y = direct_conv.forward(x, W, b, True, pads, (1, 1), (1, 1), out_hw)
    grads = direct_conv.backward(x, dy, y, W, pads, (1, 1), (1, 1), x.shape[3] >= 32)
    return (y, *[g for g in grads if g is not None])


def test_thread_count_changes_no_number():
    """The batch's parts follow from its size (parallel.ranges): 1, 2 or 3 threads
    give the same bits, forward and gradients."""
    r = np.random.default_rng(5)
    x = r.normal(size=(7, 12, 12, 3)).astype(np.float32)
    W = r.normal(size=(3, 3, 3, 40)).astype(np.float32)
    b = r.normal(size=40).astype(np.float32)
    out_hw, pads = plan2d((12, 12), (3, 3), (1, 1), (1, 1), "same")
    dy = r.normal(size=(7, *out_hw, 40)).astype(np.float32)
    one = _both(x, W, b, pads, out_hw, dy, 1)
    for threads in (2, 3):
        for a, c in zip(one, _both(x, W, b, pads, out_hw, dy, threads)):
            np.testing.assert_array_equal(a, c)
    x = r.normal(size=(5, 9, 9, 33)).astype(np.float32)  # with dx
    W = r.normal(size=(3, 3, 33, 32)).astype(np.float32)
    out_hw, pads = plan2d((9, 9), (3, 3), (1, 1), (1, 1), "valid")
    dy = r.normal(size=(5, *out_hw, 32)).astype(np.float32)
    one = _both(x, W, b[:32], pads, out_hw, dy, 1)
    assert len(one) == 4
    for a, c in zip(one, _both(x, W, b[:32], pads, out_hw, dy, 2)):
        np.testing.assert_array_equal(a, c)


def test_blocks_and_batch_change_no_number():
    """An output has the same bits whichever register block computed it (blocks run
    across row ends; the last block of pixels and of channels overlaps the one
    before) and whatever else is in the batch: against narrower and shorter images
    (other blocks), channel subsets (one channel block) and the sample alone."""
    r = np.random.default_rng(6)
    x = r.normal(size=(3, 9, 13, 3)).astype(np.float32)
    W = r.normal(size=(3, 3, 3, 45)).astype(np.float32)
    b = r.normal(size=45).astype(np.float32)

    def conv(xx, WW, bb):
        out_hw, pads = plan2d(xx.shape[1:3], (3, 3), (1, 1), (1, 1), "valid")
        return direct_conv.forward(xx, WW, bb, False, pads, (1, 1), (1, 1), out_hw)

    full = conv(x, W, b)  # 7 × 11 pixels: the last block at 69; 45 channels: 0 and 13
    np.testing.assert_array_equal(full[:, :, :8], conv(x[:, :, :10], W, b))
    np.testing.assert_array_equal(full[:, :, 3:], conv(x[:, :, 3:], W, b))
    np.testing.assert_array_equal(full[..., :32], conv(x, W[..., :32], b[:32]))
    np.testing.assert_array_equal(full[..., 13:], conv(x, W[..., 13:], b[13:]))
    np.testing.assert_array_equal(full[:, :5], conv(x[:, :7], W, b))
    np.testing.assert_array_equal(full[1:2], conv(x[1:2], W, b))


def test_layer_weight_gradients_by_finite_differences(monkeypatch):
    """The layer on the direct path (forced, float64, no input gradient): dW and db
    by central differences (the shared helper); relu kept away from its kink."""
    monkeypatch.setenv("TRAINER_CONV_DIRECT", "force")
    monkeypatch.delenv("TRAINER_CONV_ALGO", raising=False)
    r = np.random.default_rng(7)
    x = r.normal(size=(2, 6, 9, 2))
    layer = layers.get({"Conv2D": {"filters": 33, "kernel_size": 3, "padding": "same",
                                   "strides": [1, 1], "activation": "relu"}})
    layer.dtype = np.float64
    layer.output_shape = layer.build(x.shape[1:], r)
    layer.built = True
    layer.needs_input_grad = False
    W = r.normal(size=(3, 3, 2, 33))
    layer.set_weights([W, np.full(33, 0.05)])
    z = ref.conv2d(x, W, np.full(33, 0.05), (1, 1), "same")
    assert np.abs(z).min() > 1e-4  # away from relu's kink for h = 1e-6
    taken = []
    real = direct_conv.forward
    monkeypatch.setattr(direct_conv, "forward", lambda *a: taken.append(1) or real(*a))
    check_layer(layer, x)
    assert taken


def test_layer_input_gradient_by_finite_differences(monkeypatch):
    """A hidden layer on the direct path (float64, forced): dx, dW, db by central
    differences (the shared helper)."""
    monkeypatch.setenv("TRAINER_CONV_DIRECT", "force")
    monkeypatch.delenv("TRAINER_CONV_ALGO", raising=False)
    r = np.random.default_rng(8)
    x = r.normal(size=(1, 3, 4, 32))
    layer = layers.get({"Conv2D": {"filters": 32, "kernel_size": 3, "padding": "same"}})
    taken = []
    real = direct_conv.backward
    monkeypatch.setattr(direct_conv, "backward", lambda *a: taken.append(a[-1]) or real(*a))
    check_layer(layer, x)
    assert taken and taken[0] is True


def _path(monkeypatch, channels, filters, training, input_grad=False, dtype=np.float32,
          size=10, **args):
    """Whether a Conv2D forward takes the direct path, and (y, grads) it gives."""
    taken = []
    real = direct_conv.forward
    monkeypatch.setattr(direct_conv, "forward", lambda *a: taken.append(1) or real(*a))
    x = np.random.default_rng(0).normal(size=(2, size, size, channels)).astype(dtype)
    layer = layers.get({"Conv2D": {"filters": filters, "kernel_size": 3,
                                   "activation": "relu", **args}})
    layer.build(x.shape[1:], np.random.default_rng(0))
    layer.cast(dtype)
    layer.needs_input_grad = input_grad
    y, back = layer.forward(x, training)
    if training:
        assert back(np.ones_like(y)) is None or input_grad
    return bool(taken), y, {k: v.copy() for k, v in layer.grads.items()}


def test_dispatch_by_shape_and_setting(monkeypatch):
    monkeypatch.delenv("TRAINER_CONV_ALGO", raising=False)
    monkeypatch.delenv("TRAINER_CONV_DIRECT", raising=False)
    monkeypatch.setattr(direct_conv, "wide_vectors", lambda: True)  # AVX-512's rule
    assert _path(monkeypatch, 3, 32, False, padding="same")[0]
    assert _path(monkeypatch, 3, 32, True, padding="same")[0]  # first layer: no dx
    assert not _path(monkeypatch, 3, 32, True, input_grad=True)[0]  # dx: 3 outputs
    assert _path(monkeypatch, 3, 32, False, input_grad=True)[0]  # inference: no dx
    assert _path(monkeypatch, 32, 32, True, input_grad=True)[0]  # hidden, with dx
    assert _path(monkeypatch, 64, 64, True, input_grad=True)[0]  # 8 × 8: small
    assert not _path(monkeypatch, 32, 128, True, input_grad=True)[0]  # > 64 filters
    assert not _path(monkeypatch, 32, 32, True, input_grad=True, strides=2)[0]
    assert not _path(monkeypatch, 3, 16, False)[0]  # fewer filters than a block
    assert _path(monkeypatch, 8, 32, True)[0]  # 3×3 rule, no dx: up to 32 channels
    assert not _path(monkeypatch, 8, 32, True, input_grad=True)[0]  # dx: 8 outputs
    assert _path(monkeypatch, 32, 32, False, padding="same")[0]  # inference, 3×3
    assert _path(monkeypatch, 64, 32, False)[0]  # 8 × 8 outputs: small
    assert _path(monkeypatch, 64, 32, False, size=18)[0]  # 16 × 16: 256 pixels
    assert not _path(monkeypatch, 64, 32, False, size=19)[0]  # 17 × 17
    assert not _path(monkeypatch, 128, 32, False)[0]
    assert not _path(monkeypatch, 8, 32, False, kernel_size=5)[0]  # 3×3 only
    assert not _path(monkeypatch, 8, 32, False, dilation_rate=2)[0]
    assert _path(monkeypatch, 3, 32, True, kernel_size=5)[0]  # first layer: any kernel
    assert not _path(monkeypatch, 3, 32, False, dtype=np.float64)[0]
    assert _path(monkeypatch, 3, 32, False, strides=2)[0]  # 4 × 4 output pixels
    assert not _path(monkeypatch, 3, 32, False, strides=4)[0]  # 2 × 2
    assert not _path(monkeypatch, 3, 32, False, activation="tanh")[0]
    monkeypatch.setenv("TRAINER_CONV_DIRECT", "force")
    assert _path(monkeypatch, 128, 32, False)[0]
    assert _path(monkeypatch, 3, 32, True, kernel_size=[1, 3], strides=[1, 2])[0]
    monkeypatch.setenv("TRAINER_CONV_ALGO", "im2col")  # a forced algorithm wins
    assert not _path(monkeypatch, 3, 32, False)[0]
    monkeypatch.setenv("TRAINER_CONV_ALGO", "auto")
    monkeypatch.setenv("TRAINER_CONV_DIRECT", "off")
    assert not _path(monkeypatch, 3, 32, False)[0]
    monkeypatch.setenv("TRAINER_CONV_DIRECT", "fast")
    with pytest.raises(ConfigError, match="TRAINER_CONV_DIRECT: expected one of auto, "
                                          "off, force, got 'fast'"):
        direct_conv.setting()


def test_layer_matches_the_im2col_path(monkeypatch):
    """The first layer of a model, training step: the same output and weight
    gradients as the im2col path within float32 rounding."""
    monkeypatch.delenv("TRAINER_CONV_ALGO", raising=False)
    runs = {}
    for mode in ("auto", "off"):
        monkeypatch.setenv("TRAINER_CONV_DIRECT", mode)
        runs[mode] = _path(monkeypatch, 3, 40, True, padding="same")
    assert runs["auto"][0] and not runs["off"][0]
    np.testing.assert_allclose(runs["auto"][1], runs["off"][1], rtol=1e-5, atol=1e-5)
    for k in ("kernel", "bias"):
        np.testing.assert_allclose(runs["auto"][2][k], runs["off"][2][k], rtol=1e-4,
                                   atol=1e-4)

