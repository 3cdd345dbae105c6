import numpy as np
import pytest

from gradcheck import check_layer
from trainer.errors import ConfigError
from trainer.config.families import layers

NORMAL = {"random_normal": {"mean": 1.0, "stddev": 0.5}}


def make(kind, **args):
    return layers.get({kind: args})


def test_batchnorm_training_uses_batch_statistics(rng):
    x = rng.normal(2.0, 3.0, size=(16, 4, 4, 3))
    layer = make("BatchNormalization", gamma_initializer=NORMAL, beta_initializer=NORMAL)
    y = check_layer(layer, x)
    g, b = layer.params["gamma"], layer.params["beta"]
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(y, g * (x - mean) / np.sqrt(var + 1e-3) + b)


def test_batchnorm_moving_statistics_formula(rng):
    x = rng.normal(5.0, 2.0, size=(32, 3))
    layer = make("BatchNormalization", momentum=0.9)
    layer.build((3,), rng)
    assert layer.weight_names() == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert list(layer.buffers) == ["moving_mean", "moving_variance"]
    layer.forward(x.astype(np.float32), True)
    np.testing.assert_allclose(layer.buffers["moving_mean"], 0.9 * 0 + 0.1 * x.mean(0),
                               rtol=1e-5)
    # 2-D inputs take tf.keras 2's non-fused path: the biased batch variance
    np.testing.assert_allclose(layer.buffers["moving_variance"],
                               0.9 * 1 + 0.1 * x.var(0), rtol=1e-5)
    before = {k: v.copy() for k, v in layer.buffers.items()}
    layer.forward(x.astype(np.float32), False)  # inference leaves them alone
    for k in before:
        np.testing.assert_array_equal(layer.buffers[k], before[k])
    assert layer.count_params() == (6, 6)


@pytest.mark.parametrize("shape, axis, dtype, ddof", [
    ((32, 3), -1, np.float32, 0),            # after Dense: non-fused, biased
    ((8, 5, 3), -1, np.float32, 0),          # sequences: non-fused
    ((8, 4, 4, 3), -1, np.float32, 1),       # after Conv2D: fused, unbiased m/(m-1)
    ((8, 3, 4, 4), 1, np.float32, 1),        # channels first: fused too
    ((4, 2, 3, 3, 3), -1, np.float32, 1),    # after Conv3D: fused
    ((8, 4, 4, 3), 2, np.float32, 0),        # a spatial axis: no fused kernel
    ((8, 4, 4, 3), -1, np.float64, 0),       # float64: no fused kernel
])
def test_batchnorm_moving_variance_follows_tf_keras_2_fused_or_not(rng, shape, axis, dtype,
                                                                     ddof):
    """tf.keras 2 updates the moving variance with the unbiased batch variance on its
    fused path (rank-4/5 float32 inputs over the channel axis) and with the biased one
    elsewhere (its non-fused path, e.g. 2-D inputs after Dense)."""
    x = rng.normal(1.0, 2.0, size=shape).astype(dtype)
    layer = make("BatchNormalization", axis=axis, momentum=0.5)
    layer.dtype = dtype
    layer.build(shape[1:], rng)
    layer.cast(dtype)
    layer.forward(x, True)
    a = axis % len(shape)
    others = tuple(i for i in range(len(shape)) if i != a)
    want = 0.5 + 0.5 * x.astype(np.float64).var(axis=others, ddof=ddof)
    np.testing.assert_allclose(layer.buffers["moving_variance"], want, rtol=1e-5)


def test_batchnorm_inference_uses_moving_statistics(rng):
    layer = make("BatchNormalization", epsilon=0.01)
    layer.build((2, 3), rng)
    layer.buffers["moving_mean"][:] = [1.0, 2.0, 3.0]
    layer.buffers["moving_variance"][:] = [4.0, 1.0, 0.25]
    layer.params["gamma"][:] = 2.0
    layer.params["beta"][:] = 0.5
    x = rng.normal(size=(5, 2, 3)).astype(np.float32)
    y, _ = layer.forward(x, False)
    expect = 2.0 * (x - [1, 2, 3]) / np.sqrt(np.array([4.0, 1.0, 0.25]) + 0.01) + 0.5
    np.testing.assert_allclose(y, expect, rtol=1e-5)
    assert y.dtype == np.float32


def test_batchnorm_inference_and_frozen_gradients(rng):
    x = rng.normal(size=(6, 5))
    check_layer(make("BatchNormalization", gamma_initializer=NORMAL), x, training=False)
    frozen = make("BatchNormalization", trainable=False, moving_variance_initializer=NORMAL)
    y = check_layer(frozen, x, training=True)  # frozen → inference mode, as Keras 2
    np.testing.assert_allclose(y, x / np.sqrt(frozen.buffers["moving_variance"] + 1e-3))


@pytest.mark.parametrize("args", [{"center": False}, {"scale": False}, {"axis": 1},
                                  {"axis": [1, 3]}])
def test_batchnorm_options(rng, args):
    layer = make("BatchNormalization", gamma_initializer=NORMAL, **args)
    check_layer(layer, rng.normal(size=(4, 3, 2, 2)))
    if "center" in args:
        assert "beta" not in layer.params
    if args.get("axis") == [1, 3]:
        assert layer.params["gamma"].shape == (3, 2)


def test_layernorm_forward_and_gradients(rng):
    x = rng.normal(1.0, 2.0, size=(4, 3, 5))
    layer = make("LayerNormalization", gamma_initializer=NORMAL, beta_initializer=NORMAL)
    y = check_layer(layer, x)
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(y, layer.params["gamma"] * (x - mean) / np.sqrt(var + 1e-3)
                               + layer.params["beta"])
    check_layer(make("LayerNormalization", axis=[1, 2], gamma_initializer=NORMAL), x)
    check_layer(make("LayerNormalization", center=False, scale=False), x, training=False)


def test_normalization_errors(rng):
    with pytest.raises(ConfigError, match="axis"):
        make("BatchNormalization", axis=3, name="bn").build((4, 2), rng)
    with pytest.raises(ConfigError, match="momentum"):
        make("BatchNormalization", momentum=1.5)


@pytest.mark.parametrize("groups,shape", [(2, (3, 4, 5, 6)), (-1, (3, 7, 4)), (1, (2, 3, 4))])
def test_group_normalization_matches_numpy_and_gradients(rng, groups, shape):
    """Statistics per sample and group over the spatial axes and the group's channels
    (tf.keras's GroupNormalization); gamma, beta per channel."""
    x = rng.normal(2.0, 3.0, size=shape)
    layer = layers.get({"GroupNormalization": {"groups": groups, "epsilon": 1e-3,
                                               "gamma_initializer": {"random_normal": {}},
                                               "beta_initializer": {"random_normal": {}}}})
    y = check_layer(layer, x)
    c = shape[-1]
    g = c if groups == -1 else groups
    xr = x.reshape(shape[0], -1, g, c // g)
    mean = xr.mean(axis=(1, 3), keepdims=True)
    var = xr.var(axis=(1, 3), keepdims=True)
    expect = ((xr - mean) / np.sqrt(var + 1e-3)).reshape(shape)
    gamma, beta = layer.params["gamma"], layer.params["beta"]
    np.testing.assert_allclose(y, expect * gamma + beta, atol=1e-10)
    with pytest.raises(ConfigError, match="groups 4 must divide the 6 channels"):
        layers.get({"GroupNormalization": {"groups": 4}}).build((5, 6), rng)


def test_unit_normalization(rng):
    x = rng.normal(size=(3, 4, 5))
    y = check_layer(layers.get({"UnitNormalization": {}}), x)
    np.testing.assert_allclose(y, x / np.linalg.norm(x, axis=-1, keepdims=True))
    y = check_layer(layers.get({"UnitNormalization": {"axis": [1, 2]}}), x)
    np.testing.assert_allclose(np.sqrt((y ** 2).sum(axis=(1, 2))), 1.0)
    zero = layers.get({"UnitNormalization": {}})
    zero.build((3,), rng)
    np.testing.assert_array_equal(zero.forward(np.zeros((2, 3)), False)[0], 0)
