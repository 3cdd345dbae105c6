"""Noise layers: SpatialDropout1D/2D/3D, GaussianNoise, GaussianDropout, AlphaDropout."""

import math

import numpy as np
import pytest

import cbhelp
from gradcheck import check_layer
from trainer.app import fit as api
from trainer.errors import ConfigError
from trainer.layers.noise import ALPHA, SCALE
from trainer.config.families import layers

ALL = [
    ({"SpatialDropout1D": {"rate": 0.3}}, (4, 5, 3)),
    ({"SpatialDropout2D": {"rate": 0.3}}, (3, 4, 3, 2)),
    ({"SpatialDropout3D": {"rate": 0.3}}, (3, 2, 4, 3, 2)),
    ({"GaussianNoise": {"stddev": 0.5}}, (4, 6)),
    ({"GaussianDropout": {"rate": 0.3}}, (4, 6)),
    ({"AlphaDropout": {"rate": 0.3}}, (4, 6)),
    ({"AlphaDropout": {"rate": 0.3, "noise_shape": [None, 1, 3]}}, (4, 5, 3)),
]
IDS = ["spatial1d", "spatial2d", "spatial3d", "gaussian_noise", "gaussian_dropout", "alpha",
       "alpha_noise_shape"]


def built(spec, shape, rng):
    layer = layers.get(spec)
    layer.build(shape[1:], rng)
    layer.rng = np.random.default_rng(3)
    return layer


@pytest.mark.parametrize("spec, shape", ALL, ids=IDS)
def test_gradients_in_training(spec, shape, rng):
    x = rng.normal(size=shape)
    y = check_layer(layers.get(spec), x)
    assert not np.allclose(y, x)  # the noise was applied


@pytest.mark.parametrize("spec, shape", ALL, ids=IDS)
def test_identity_at_inference(spec, shape, rng):
    x = rng.normal(size=shape).astype(np.float32)
    layer = built(spec, shape, rng)
    y, back = layer.forward(x, training=False)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(back(x), x)


@pytest.mark.parametrize("spec, shape", ALL, ids=IDS)
def test_float32_stays_float32(spec, shape, rng):
    x = rng.normal(size=shape).astype(np.float32)
    layer = built(spec, shape, rng)
    y, back = layer.forward(x, training=True)
    assert y.dtype == np.float32
    assert back(np.ones_like(y)).dtype == np.float32


@pytest.mark.parametrize("name", ["SpatialDropout1D", "SpatialDropout2D",
                                  "GaussianDropout", "AlphaDropout"])
def test_rate_one_is_refused(name):
    with pytest.raises(ConfigError, match=r"rate must be in \[0, 1\)"):
        layers.get({name: {"rate": 1.0}})


def test_channels_first_is_refused():
    with pytest.raises(ConfigError, match="channels_last"):
        layers.get({"SpatialDropout2D": {"rate": 0.3, "data_format": "channels_first"}})
    layers.get({"SpatialDropout2D": {"rate": 0.3, "data_format": "channels_last"}})


@pytest.mark.parametrize("spec, shape", [({"SpatialDropout1D": 0.3}, (5,)),
                                         ({"SpatialDropout2D": 0.3}, (5, 3)),
                                         ({"AlphaDropout": {"rate": 0.3,
                                                            "noise_shape": [None, 2]}}, (5,))])
def test_wrong_shapes_are_refused(spec, shape, rng):
    with pytest.raises(ConfigError):
        layers.get(spec).build(shape, rng)


@pytest.mark.parametrize("spec, shape", [({"SpatialDropout1D": {"rate": 0.25}}, (40, 7, 50)),
                                         ({"SpatialDropout2D": {"rate": 0.25}},
                                          (40, 3, 4, 50))])
def test_spatial_dropout_drops_whole_channels(spec, shape, rng):
    x = rng.uniform(1, 2, size=shape)
    layer = built(spec, shape, rng)
    y, back = layer.forward(x, training=True)
    ratio = (y / x).reshape(shape[0], -1, shape[-1])  # (batch, positions, channels)
    dropped = np.all(ratio == 0, axis=1)  # (batch, channels)
    kept = np.all(ratio != 0, axis=1)
    assert np.all(dropped | kept)  # every position of a channel shares its fate
    assert abs(dropped.mean() - 0.25) < 0.03  # 2000 channels
    scale = np.where(dropped, 0.0, 1 / 0.75).reshape(shape[0], *[1] * (len(shape) - 2), -1)
    np.testing.assert_array_equal(y, x * scale)  # kept ones scaled by exactly 1/(1-rate)
    np.testing.assert_array_equal(back(np.ones(shape)), np.broadcast_to(scale, shape))


def test_gaussian_noise_statistics(rng):
    x = rng.normal(size=(400, 500)).astype(np.float32)
    y, back = built({"GaussianNoise": {"stddev": 0.3}}, x.shape, rng).forward(x, True)
    noise = (y - x).astype(np.float64)
    assert abs(noise.mean()) < 0.003
    assert abs(noise.std() - 0.3) < 0.003
    np.testing.assert_array_equal(back(x), x)


def test_gaussian_dropout_statistics(rng):
    x = np.full((400, 500), 2.0, np.float32)
    y, back = built({"GaussianDropout": {"rate": 0.2}}, x.shape, rng).forward(x, True)
    multiplier = y.astype(np.float64) / 2
    assert abs(multiplier.mean() - 1) < 0.003
    assert abs(multiplier.std() - math.sqrt(0.2 / 0.8)) < 0.003
    np.testing.assert_allclose(back(np.ones_like(x)), multiplier, rtol=1e-6)


@pytest.mark.parametrize("rate", [0.1, 0.4])
def test_alpha_dropout_keeps_mean_and_variance(rate, rng):
    x = rng.normal(size=(400, 500))
    y, back = built({"AlphaDropout": {"rate": rate}}, x.shape, rng).forward(x, True)
    assert abs(y.mean()) < 0.01
    assert abs(y.var() - 1) < 0.01
    alpha_p = -ALPHA * SCALE
    a = ((1 - rate) * (1 + rate * alpha_p ** 2)) ** -0.5
    b = -a * alpha_p * rate
    gain = back(np.ones_like(x))
    dropped = gain == 0
    assert abs(dropped.mean() - rate) < 0.01
    np.testing.assert_allclose(y[dropped], a * alpha_p + b, rtol=1e-12)
    np.testing.assert_allclose(y[~dropped], a * x[~dropped] + b, rtol=1e-12)
    np.testing.assert_allclose(gain[~dropped], a, rtol=1e-12)


def test_rate_zero_is_the_identity(rng):
    x = rng.normal(size=(4, 5, 3))
    for name in ["SpatialDropout1D", "GaussianDropout", "AlphaDropout"]:
        y, _ = built({name: {"rate": 0.0}}, x.shape, rng).forward(x, training=True)
        np.testing.assert_array_equal(y, x)


def test_model_with_noise_layers_trains_reproducibly(tmp_path):
    model = {"input_shape": [4], "layers": [
        {"Dense": {"units": 8, "activation": "selu"}},
        {"GaussianNoise": {"stddev": 0.1}},
        {"AlphaDropout": {"rate": 0.1}},
        {"GaussianDropout": {"rate": 0.2}},
        {"Dense": {"units": 3, "activation": "softmax"}}]}
    built_model = api.build(cbhelp.config(tmp_path, model=model))
    noisy = [layer for layer in built_model.layers if hasattr(layer, "rng")]
    assert len(noisy) == 3 and all(la.rng is built_model.noise_rng for la in noisy)
    histories = []
    for run in ("a", "b"):
        cbhelp.fit(tmp_path, run=run, model=model, fit={"epochs": 2})
        histories.append((tmp_path / run / "history.csv").read_text())
    assert histories[0] == histories[1]
    assert len(histories[0].strip().splitlines()) == 3  # header and 2 epochs
    cbhelp.fit(tmp_path, run="c", model=model, fit={"epochs": 2}, seed=1)
    assert (tmp_path / "c" / "history.csv").read_text() != histories[0]


def test_sequence_model_with_spatial_dropout_trains(tmp_path):
    data = {"train": {"dataset": "marker_order", "subset": "train", "n": 200},
            "validation": None, "preprocess": None}
    model = {"input_shape": None, "layers": [
        {"Embedding": {"input_dim": 16, "output_dim": 4, "input_length": 24}},
        {"Conv1D": {"filters": 4, "kernel_size": 3, "activation": "relu"}},
        {"SpatialDropout1D": {"rate": 0.2}},
        {"GlobalMaxPooling1D": None},
        {"Dense": {"units": 4, "activation": "softmax"}}]}
    compile_ = {"loss": "sparse_categorical_crossentropy", "metrics": None}
    histories = []
    for run in ("a", "b"):
        cbhelp.fit(tmp_path, run=run, data=data, model=model, compile=compile_,
                   fit={"epochs": 2})
        histories.append((tmp_path / run / "history.csv").read_text())
    assert histories[0] == histories[1]


def test_spatial_dropout_3d_drops_whole_volumes(rng):
    x = np.ones((6, 2, 3, 4, 5))
    layer = built({"SpatialDropout3D": {"rate": 0.5}}, x.shape, rng)
    y, _ = layer.forward(x, training=True)
    per_channel = y.reshape(6, -1, 5)
    assert np.all(per_channel.min(axis=1) == per_channel.max(axis=1))  # all or nothing
    assert set(np.unique(y)) <= {0.0, 2.0}
