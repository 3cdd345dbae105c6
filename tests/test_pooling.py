import numpy as np
import pytest

from gradcheck import check_layer
from trainer.engine.kernels import conv_reference as ref
from trainer.errors import ConfigError
from trainer.config.families import layers


def make(kind, **args):
    return layers.get({kind: args})


def distinct(rng, shape):
    """Values with no ties, so the max is unique and away from kinks."""
    return rng.permutation(np.arange(np.prod(shape), dtype=np.float64)).reshape(shape) * 0.1


@pytest.mark.parametrize("pool,strides,padding", [
    (2, None, "valid"), (3, 2, "same"), (2, 1, "same"), ([2, 3], [1, 2], "valid"),
    (3, 3, "same")])
@pytest.mark.parametrize("kind,mode", [("MaxPooling2D", "max"), ("AveragePooling2D", "avg")])
def test_pool2d_matches_reference_and_gradients(rng, kind, mode, pool, strides, padding):
    x = distinct(rng, (2, 7, 6, 3))
    y = check_layer(make(kind, pool_size=pool, strides=strides, padding=padding), x)
    p = (pool, pool) if isinstance(pool, int) else tuple(pool)
    s = p if strides is None else ((strides, strides) if isinstance(strides, int)
                                   else tuple(strides))
    np.testing.assert_allclose(y, ref.pool2d(x, p, s, padding, mode), atol=1e-12)


def test_average_same_divides_by_real_cells_only():
    x = np.ones((1, 3, 3, 1))
    y, _ = make("AveragePooling2D", pool_size=2, padding="same").forward(x, False)
    np.testing.assert_allclose(y, 1.0)  # padding zeros are not counted


def test_max_pool_gradient_goes_to_the_first_maximum():
    x = np.ones((1, 2, 2, 1))
    layer = make("MaxPooling2D")
    y, back = layer.forward(x, True)
    dx = back(np.ones_like(y))
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1, 0], [0, 0]])


@pytest.mark.parametrize("kind,fn", [("MaxPooling1D", np.max), ("AveragePooling1D", np.mean)])
def test_pool1d(rng, kind, fn):
    x = distinct(rng, (2, 9, 3))
    y = check_layer(make(kind, pool_size=3, strides=2), x)
    expect = np.stack([fn(x[:, i:i + 3], axis=1) for i in range(0, 7, 2)], axis=1)
    np.testing.assert_allclose(y, expect)
    check_layer(make(kind, pool_size=2, padding="same"), x)


@pytest.mark.parametrize("kind,fn,axes", [
    ("GlobalMaxPooling2D", np.max, (1, 2)), ("GlobalAveragePooling2D", np.mean, (1, 2)),
    ("GlobalMaxPooling1D", np.max, (1,)), ("GlobalAveragePooling1D", np.mean, (1,))])
def test_global_pooling(rng, kind, fn, axes):
    shape = (2, 4, 5, 3) if len(axes) == 2 else (2, 6, 3)
    x = distinct(rng, shape)
    y = check_layer(make(kind), x)
    np.testing.assert_allclose(y, fn(x, axis=axes))
    layer = make(kind, keepdims=True)
    y = check_layer(layer, x)
    assert y.shape == (2,) + (1,) * len(axes) + (3,)


def test_pool_errors(rng):
    with pytest.raises(ConfigError, match="larger than the input"):
        make("MaxPooling2D", pool_size=4, name="p").build((3, 8, 2), rng)
    with pytest.raises(ConfigError, match="rank 4"):
        make("MaxPooling2D").build((8, 2), rng)
    with pytest.raises(ConfigError, match="padding"):
        make("MaxPooling2D", padding="full")
    with pytest.raises(ConfigError, match="rank 3"):
        make("GlobalMaxPooling1D").build((4, 4, 2), rng)


def test_classic_shapes(rng):
    layer = make("MaxPooling2D", pool_size=2)
    assert layer.build((30, 30, 32), rng) == (15, 15, 32)
    assert make("MaxPooling2D").build((13, 13, 64), rng) == (6, 6, 64)
    assert make("MaxPooling2D", padding="same").build((13, 13, 64), rng) == (7, 7, 64)


@pytest.mark.parametrize("seed", range(5))
def test_numba_max_pool_matches_numpy_version(seed):
    from trainer.engine.kernels.conv import plan2d
    from trainer.layers.pooling import max_pool, max_pool_numpy
    r = np.random.default_rng(seed)
    pool = tuple(int(v) for v in r.integers(1, 4, 2))
    strides = tuple(int(v) for v in r.integers(1, 4, 2))
    padding = ["valid", "same"][seed % 2]
    x = r.integers(0, 4, (2, 9, 8, 3)).astype(np.float32)  # many ties
    out_hw, pads = plan2d(x.shape[1:3], pool, strides, (1, 1), padding)
    y, back = max_pool(x, pool, strides, out_hw, pads)
    y_ref, back_ref = max_pool_numpy(x, pool, strides, out_hw, pads)
    np.testing.assert_array_equal(y, y_ref)
    dy = r.normal(size=y.shape).astype(np.float32)
    np.testing.assert_allclose(back(dy), back_ref(dy), rtol=1e-6, atol=1e-6)


def test_global_average_pooling_1d_averages_the_unmasked_steps(rng):
    """Keras: with a mask, Σ x·m / Σ m over the steps; a fully masked sample gives 0
    here (Keras: 0/0)."""
    x = rng.normal(size=(3, 5, 2))
    mask = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], bool)
    layer = make("GlobalAveragePooling1D")
    y, back = layer.forward(x, True, mask=mask)
    np.testing.assert_allclose(y[0], x[0, :2].mean(axis=0))
    np.testing.assert_allclose(y[1], x[1].mean(axis=0))
    np.testing.assert_array_equal(y[2], 0)
    dy = rng.normal(size=y.shape)
    dx = back(dy)
    np.testing.assert_allclose(dx[0, :2], np.broadcast_to(dy[0] / 2, (2, 2)))
    np.testing.assert_array_equal(dx[0, 2:], 0)
    np.testing.assert_array_equal(dx[2], 0)
    y, _ = make("GlobalAveragePooling1D", keepdims=True).forward(x, False, mask=mask)
    assert y.shape == (3, 1, 2)


def test_masked_average_through_a_model_ignores_padding_and_gradients_check():
    """The classic text model, Embedding(mask_zero) → GlobalAveragePooling1D → Dense:
    what sits at padded positions changes nothing; float64 finite differences agree."""
    from pathlib import Path

    from gradcheck import check_model
    from trainer.build.builder import build_model
    from trainer.config.loader import from_dict

    cfg = from_dict({
        "data": {"train": {"dataset": "iris"}},
        "model": {"input_shape": [6], "layers": [
            {"Embedding": {"input_dim": 9, "output_dim": 4, "mask_zero": True}},
            {"GlobalAveragePooling1D": {}},
            {"Dense": {"units": 3, "activation": "softmax"}}]},
        "compile": {"loss": "categorical_crossentropy", "optimizer": "sgd"}}, Path("t.yaml"))
    model = build_model(cfg)
    ids = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 1], [2, 0, 0, 0, 0, 0]])
    y = model.predict_on_batch([ids])[0]
    emb = model.layers[0].params["embeddings"]
    emb[0] += 5.0  # the padding id's vector
    np.testing.assert_allclose(model.predict_on_batch([ids])[0], y, rtol=1e-6)
    vectors = emb[ids[0, :3]].mean(axis=0)
    dense = model.layers[-1].params
    z = vectors @ dense["kernel"] + dense["bias"]
    np.testing.assert_allclose(y[0], np.exp(z) / np.exp(z).sum(), rtol=1e-5)
    check_model(model, [ids], [np.eye(3)[[0, 2, 1]]])
