"""3-D layers (trainer/layers/volumetric.py): forward values against plain loops over
every output cell, gradients by float64 finite differences (tests/gradcheck.py)."""

import itertools

import numpy as np
import pytest

from gradcheck import check_layer
from trainer.engine.kernels.conv import out_size
from trainer.errors import ConfigError
from trainer.config.families import layers

NORMAL = {"random_normal": {"stddev": 0.5}}


def make(kind, **args):
    return layers.get({kind: args})


def padded(x, kernel, strides, dilation, padding, value=0.0):
    """(padded x, output sizes) with TensorFlow's 'same' split (odd pad after)."""
    sizes = [out_size(n, k, s, d, padding) for n, k, s, d in
             zip(x.shape[1:4], kernel, strides, dilation)]
    pads = [(0, 0), *[(a, b) for _, a, b in sizes], (0, 0)]
    return np.pad(x, pads, constant_values=value), [n for n, _, _ in sizes]


def conv3d_loops(x, K, b, strides, dilation, padding):
    xp, out = padded(x, K.shape[:3], strides, dilation, padding)
    y = np.zeros((x.shape[0], *out, K.shape[-1]))
    for i, j, k in itertools.product(*(range(n) for n in out)):
        for p, q, r in itertools.product(*(range(n) for n in K.shape[:3])):
            cell = xp[:, i * strides[0] + p * dilation[0], j * strides[1] + q * dilation[1],
                      k * strides[2] + r * dilation[2]]
            y[:, i, j, k] += cell @ K[p, q, r]
    return y + b


def pool3d_loops(x, pool, strides, padding, mode):
    xp, out = padded(x, pool, strides, (1, 1, 1), padding, np.nan)
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    for i, j, k in itertools.product(*(range(n) for n in out)):
        box = xp[:, i * strides[0]:i * strides[0] + pool[0],
                 j * strides[1]:j * strides[1] + pool[1], k * strides[2]:k * strides[2] + pool[2]]
        box = box.reshape(x.shape[0], -1, x.shape[-1])
        y[:, i, j, k] = np.nanmax(box, axis=1) if mode == "max" else np.nanmean(box, axis=1)
    return y


@pytest.mark.parametrize("args", [
    {"kernel_size": 2},
    {"kernel_size": [2, 3, 1], "strides": [1, 2, 1], "padding": "same"},
    {"kernel_size": 2, "dilation_rate": [2, 1, 1], "padding": "same", "activation": "tanh"}])
def test_conv3d_matches_loops_and_gradients(rng, args):
    x = rng.normal(size=(2, 4, 5, 3, 2))
    layer = make("Conv3D", filters=3, kernel_initializer=NORMAL,
                 bias_initializer={"constant": 0.1}, **args)
    y = check_layer(layer, x)
    K, b = layer.params["kernel"], layer.params["bias"]
    assert K.shape == (*layer.kernel_size, 2, 3)
    z = conv3d_loops(x, K, b, layer.strides, layer.dilation_rate, layer.padding)
    np.testing.assert_allclose(y, np.tanh(z) if "activation" in args else z, atol=1e-10)


@pytest.mark.parametrize("kind,mode", [("MaxPooling3D", "max"), ("AveragePooling3D", "avg")])
@pytest.mark.parametrize("args", [{}, {"pool_size": [2, 3, 2], "strides": 1},
                                  {"pool_size": 2, "strides": [1, 2, 2], "padding": "same"},
                                  {"pool_size": 3, "padding": "same"}])
def test_pool3d_matches_loops_and_gradients(rng, kind, mode, args):
    x = rng.permutation(np.arange(2 * 4 * 5 * 5 * 2, dtype=np.float64)).reshape(
        2, 4, 5, 5, 2) * 0.1  # no ties: the max is unique
    layer = make(kind, **args)
    y = check_layer(layer, x)
    np.testing.assert_allclose(
        y, pool3d_loops(x, layer.pool_size, layer.strides, layer.padding, mode), atol=1e-12)


def test_global_pooling_padding_cropping_upsampling_3d(rng):
    x = rng.normal(size=(2, 3, 4, 2, 3))
    np.testing.assert_allclose(check_layer(make("GlobalMaxPooling3D"), x),
                               x.max(axis=(1, 2, 3)))
    np.testing.assert_allclose(check_layer(make("GlobalAveragePooling3D"), x),
                               x.mean(axis=(1, 2, 3)))
    y = check_layer(make("ZeroPadding3D", padding=[[1, 0], [2, 2], [0, 1]]), x)
    assert y.shape == (2, 4, 8, 3, 3)
    np.testing.assert_array_equal(y[:, 1:, 2:6, :2], x)
    assert y.sum() == pytest.approx(x.sum())
    y = check_layer(make("Cropping3D", cropping=[[1, 1], [1, 2], [0, 0]]), x)
    np.testing.assert_array_equal(y, x[:, 1:2, 1:2, :])
    y = check_layer(make("UpSampling3D", size=[2, 1, 3]), x)
    np.testing.assert_array_equal(y, x.repeat(2, axis=1).repeat(3, axis=3))


def test_3d_layers_explain_bad_shapes_and_arguments(rng):
    with pytest.raises(ConfigError, match=r"expects inputs of rank 5 \(batch, depth, rows, "
                                          r"cols, channels\)"):
        make("Conv3D", filters=2, kernel_size=2).build((4, 4, 2), rng)
    with pytest.raises(ConfigError, match="pool_size 3 is larger than the input's size 2"):
        make("MaxPooling3D", pool_size=3).build((2, 5, 5, 1), rng)
    with pytest.raises(ConfigError, match="cropping 1\\+1 depth leaves nothing"):
        make("Cropping3D", cropping=1).build((2, 5, 5, 1), rng)
    with pytest.raises(ConfigError, match="kernel_size must be a positive integer or a list "
                                          "of 3"):
        make("Conv3D", filters=2, kernel_size=[2, 2])


def conv3d_transpose_loops(x, K, b, strides, dilation, padding):
    """Every input cell adds x · K[p, q, r]ᵀ at (i·s + p·d, ...) of a full buffer; 'same'
    crops it to size·stride, as Keras."""
    from trainer.engine.kernels.conv import transpose_out_size

    sizes = [transpose_out_size(n, k, s, d, padding) for n, k, s, d in
             zip(x.shape[1:4], K.shape[:3], strides, dilation)]
    full = [(n - 1) * s + (k - 1) * d + 1 + o for n, k, s, d, (o, _) in
            zip(x.shape[1:4], K.shape[:3], strides, dilation, sizes)]
    buf = np.zeros((x.shape[0], *full, K.shape[3]))
    for i, j, k in itertools.product(*(range(n) for n in x.shape[1:4])):
        for p, q, r in itertools.product(*(range(n) for n in K.shape[:3])):
            buf[:, i * strides[0] + p * dilation[0], j * strides[1] + q * dilation[1],
                k * strides[2] + r * dilation[2]] += x[:, i, j, k] @ K[p, q, r].T
    keep = tuple(slice(c, c + o) for o, c in sizes)
    return buf[(slice(None), *keep)] + b


@pytest.mark.parametrize("args", [
    {"kernel_size": 2},
    {"kernel_size": [3, 2, 2], "strides": [2, 1, 2], "padding": "same"},
    {"kernel_size": [2, 3, 1], "strides": 2},
    {"kernel_size": 2, "dilation_rate": [2, 1, 1], "padding": "same", "activation": "tanh"}])
def test_conv3d_transpose_matches_loops_and_gradients(rng, args):
    x = rng.normal(size=(2, 3, 2, 3, 2))
    layer = make("Conv3DTranspose", filters=3, kernel_initializer=NORMAL,
                 bias_initializer={"constant": 0.1}, **args)
    y = check_layer(layer, x)
    K, b = layer.params["kernel"], layer.params["bias"]
    assert K.shape == (*layer.kernel_size, 3, 2)
    z = conv3d_transpose_loops(x, K, b, layer.strides, layer.dilation_rate, layer.padding)
    np.testing.assert_allclose(y, np.tanh(z) if "activation" in args else z, atol=1e-10)
    fresh = make("Conv3DTranspose", filters=3, **args)
    assert y.shape[1:] == tuple(fresh.build(x.shape[1:], rng))  # what build promised
