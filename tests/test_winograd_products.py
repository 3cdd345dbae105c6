"""Winograd's 16 products in Numba (winograd_kernels.products and products_tn, chosen by
winograd.numba_products): against np.matmul on shapes with partial register blocks,
the rule by shape and machine, and the whole convolution on that path against the
plain-loop reference (forward, dx, dW, db), bit for bit on 1, 2 or 3 threads, on every
way the weight gradient is summed (blocks, several blocks, chunks)."""

import numpy as np
import pytest

from test_winograd import conv, reference_grads
from trainer.engine.kernels import conv_reference as ref
from trainer.engine.kernels import direct_conv, parallel, winograd, winograd_transforms
from trainer.errors import ConfigError


@pytest.fixture(autouse=True)
def restore_threads():
    before = parallel.num_threads()
    yield
    parallel.set_num_threads(before)


@pytest.fixture
def numba_gemm(monkeypatch):
    monkeypatch.setenv("TRAINER_CONV_ALGO", "winograd")
    monkeypatch.setenv("TRAINER_WINOGRAD_GEMM", "numba")


def kernels():
    return winograd_transforms.kernels()


def tolerance(dtype, contracted):
    return 1e-12 * contracted if dtype == np.float64 else 2e-6 * contracted


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tiles,c,k", [(3, 1, 32), (7, 5, 33), (65, 32, 64), (130, 3, 96),
                                       (20, 70, 40)])
def test_products_match_matmul(dtype, tiles, c, k):
    """Rows and columns that are not whole blocks: the last block moves back over
    rows and columns already done and writes the same values again."""
    r = np.random.default_rng(tiles + c + k)
    A = r.normal(size=(16, tiles | 1, c)).astype(dtype)
    B = r.normal(size=(16, c, k)).astype(dtype)
    out = np.full((16, tiles | 1, k), np.nan, dtype)
    kernels()["products"](A, B, out, tiles)
    want = np.matmul(A[:, :tiles].astype(np.float64), B.astype(np.float64))
    np.testing.assert_allclose(out[:, :tiles], want, rtol=0, atol=tolerance(dtype, c))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tiles,c,k", [(1, 1, 32), (64, 3, 32), (65, 4, 64), (200, 32, 32),
                                       (301, 65, 96)])
def test_products_tn_match_matmul(dtype, tiles, c, k):
    """(C, tiles)·(tiles, K) in slices of TB tiles added in order; channels past the
    last whole block of RB one at a time; only the points asked for are written."""
    r = np.random.default_rng(tiles + c + k)
    A = r.normal(size=(16, tiles | 1, c)).astype(dtype)
    B = r.normal(size=(16, tiles | 1, k)).astype(dtype)
    out = np.full((16, c, k), np.nan, dtype)
    kernels()["products_tn"](A, B, out, tiles, 3, 11)
    want = np.matmul(A[:, :tiles].transpose(0, 2, 1).astype(np.float64),
                     B[:, :tiles].astype(np.float64))
    np.testing.assert_allclose(out[3:11], want[3:11], rtol=0, atol=tolerance(dtype, tiles))
    assert np.isnan(out[:3]).all() and np.isnan(out[11:]).all()


def test_rule_by_shape_and_machine(monkeypatch):
    monkeypatch.delenv("TRAINER_WINOGRAD_GEMM", raising=False)
    monkeypatch.setattr(direct_conv, "wide_vectors", lambda: False)  # AVX2 only
    assert winograd.numba_products(64, 64, 900)
    assert winograd.numba_products(winograd.MAX_NUMBA_CHANNELS, 256, 200)
    assert not winograd.numba_products(512, 512, 100)  # sgemm wins there
    assert not winograd.numba_products(64, 16, 900)  # fewer columns than a block
    assert not winograd.numba_products(64, 64, 2)  # fewer rows than a block
    assert winograd.numba_products(5000, 64, 64, transpose=True)
    assert not winograd.numba_products(5000, 48, 64, transpose=True)  # K % 32
    assert not winograd.numba_products(5000, 512, 512, transpose=True)
    monkeypatch.setattr(direct_conv, "wide_vectors", lambda: True)  # AVX-512: sgemm
    assert not winograd.numba_products(64, 64, 900)
    monkeypatch.setenv("TRAINER_WINOGRAD_GEMM", "numba")
    assert winograd.numba_products(512, 512, 100)
    assert not winograd.numba_products(64, 16, 900)  # never past the kernel's limits
    monkeypatch.setenv("TRAINER_WINOGRAD_GEMM", "blas")
    monkeypatch.setattr(direct_conv, "wide_vectors", lambda: False)
    assert not winograd.numba_products(64, 64, 900)
    monkeypatch.setenv("TRAINER_WINOGRAD_GEMM", "fast")
    with pytest.raises(ConfigError, match="TRAINER_WINOGRAD_GEMM"):
        winograd.numba_products(64, 64, 900)


def test_the_layer_calls_the_numba_products(monkeypatch, numba_gemm):
    """Forward, dx and dW of a 32→32 convolution all take the Numba products."""
    calls = []
    real = winograd_transforms.kernels()
    spy = dict(real)
    for name in ("products", "products_tn"):
        spy[name] = lambda *a, _name=name: (calls.append(_name), real[_name](*a))
    monkeypatch.setattr(winograd_transforms, "kernels", lambda: spy)
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 32)).astype(np.float32)
    layer = conv(x, 32, np.float32, padding="same")
    y, back = layer.forward(x, True)
    back(np.ones_like(y))
    assert calls.count("products") == 2 and calls.count("products_tn") >= 1


def _layer_grads(x, dy, W, b, padding, threads):
    parallel.set_num_threads(threads)
    layer = conv(x, W.shape[3], x.dtype, padding=padding)
    layer.set_weights([W, b])
    y, back = layer.forward(x, True)
    layer.zero_grads()
    dx = back(dy)
    return y, dx, layer.grads["kernel"].copy(), layer.grads["bias"].copy()


@pytest.mark.parametrize("way", ["one block", "blocks", "chunks"])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_convolution_on_numba_products_matches_reference(way, padding, monkeypatch,
                                                         numba_gemm):
    """float64 against the plain loops; float32 the same bits on 1, 2 and 3 threads.
    The weight gradient summed in one block, in several (added in order) or per chunk
    (``Blocks.chunked``)."""
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)  # one sample per chunk
    if way == "blocks":
        monkeypatch.setattr(winograd, "BLOCK_BYTES", 1)  # a block per chunk pair
    if way == "chunks":
        monkeypatch.setattr(winograd, "PARTIAL_SHARE", 0)
    r = np.random.default_rng(len(way) + len(padding))
    n, h, w, c, k = 5, 7, 8, 33, 64
    x = r.normal(size=(n, h, w, c))
    W, b = r.normal(size=(3, 3, c, k)) / 10, r.normal(size=k)
    ho, wo = (h, w) if padding == "same" else (h - 2, w - 2)
    dy = r.normal(size=(n, ho, wo, k))
    y, dx, dW, db = _layer_grads(x, dy, W, b, padding, 2)
    np.testing.assert_allclose(y, ref.conv2d(x, W, b, (1, 1), padding), atol=1e-10)
    want_dx, want_dW, want_db = reference_grads(x, W, dy, padding)
    np.testing.assert_allclose(dx, want_dx, atol=1e-10)
    np.testing.assert_allclose(dW, want_dW, atol=1e-9)
    np.testing.assert_allclose(db, want_db, atol=1e-10)
    x32, dy32 = x.astype(np.float32), dy.astype(np.float32)
    W32, b32 = W.astype(np.float32), b.astype(np.float32)
    one = _layer_grads(x32, dy32, W32, b32, padding, 1)
    for threads in (2, 3):
        for a, got in zip(one, _layer_grads(x32, dy32, W32, b32, padding, threads)):
            np.testing.assert_array_equal(a, got)
    monkeypatch.setenv("TRAINER_WINOGRAD_GEMM", "blas")
    blas = _layer_grads(x32, dy32, W32, b32, padding, 2)
    for a, got in zip(one, blas):  # the other summation order: rounding only
        np.testing.assert_allclose(a, got, rtol=1e-4, atol=1e-4 * np.abs(got).max())
