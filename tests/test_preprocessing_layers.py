"""Rescaling and Normalization (trainer/layers/preprocessing.py): Keras's formulas,
float64 finite differences, and Keras's weight layout."""

from pathlib import Path

import numpy as np
import pytest

from gradcheck import check_layer
from trainer.build.builder import build_model
from trainer.config.loader import from_dict
from trainer.errors import ConfigError
from trainer.config.families import layers


def test_rescaling(rng):
    x = rng.uniform(0, 255, size=(3, 4, 2))
    y = check_layer(layers.get({"Rescaling": {"scale": 1 / 127.5, "offset": -1.0}}), x)
    np.testing.assert_allclose(y, x / 127.5 - 1.0)


@pytest.mark.parametrize("invert", [False, True])
def test_normalization_with_given_statistics(rng, invert):
    x = rng.normal(size=(4, 3))
    layer = layers.get({"Normalization": {"mean": [1.0, 2.0, -1.0],
                                          "variance": [4.0, 0.25, 0.01], "invert": invert}})
    y = check_layer(layer, x)
    std = np.sqrt([4.0, 0.25, 0.01])
    expect = np.array([1.0, 2.0, -1.0]) + x * std if invert else (x - [1.0, 2.0, -1.0]) / std
    np.testing.assert_allclose(y, expect)
    assert layer.weight_names() == []  # constants, as Keras
    zero = layers.get({"Normalization": {"mean": 0.0, "variance": 0.0}})  # Keras's floor
    zero.build((3,), rng)
    np.testing.assert_allclose(zero.forward(x, False)[0], x / 1e-7)


def test_normalization_weights_are_keras_s_and_a_file_fills_them(rng):
    cfg = from_dict({"data": {"train": {"dataset": "iris"}},
                     "model": {"input_shape": [3], "layers": [{"Normalization": {}},
                                                              {"Dense": {"units": 2}}]},
                     "compile": {"loss": "mse", "optimizer": "sgd"}}, Path("t.yaml"))
    model = build_model(cfg)
    norm = model.layers[0]
    assert norm.weight_names() == ["mean", "variance", "count"]
    assert not norm.params  # non-trainable: training leaves them alone
    x = rng.normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(norm.forward(x, False)[0], x)  # identity until filled
    norm.set_weights([np.array([1, 2, 3], "f4"), np.array([4, 9, 16], "f4"), np.array(50, "f4")])
    np.testing.assert_allclose(norm.forward(x, False)[0], (x - [1, 2, 3]) / [2, 3, 4],
                               rtol=1e-6)


def test_normalization_arguments_are_checked():
    with pytest.raises(ConfigError, match="both mean and variance"):
        layers.get({"Normalization": {"mean": 1.0}})
    with pytest.raises(ConfigError, match="variance must not be negative"):
        layers.get({"Normalization": {"mean": 0.0, "variance": -1.0}})
    layer = layers.get({"Normalization": {"mean": [1.0, 2.0], "variance": [1.0, 1.0]}})
    with pytest.raises(ConfigError, match="mean has 2 values for 3 features"):
        layer.build((3,), np.random.default_rng(0))


@pytest.mark.parametrize("mode", ["horizontal", "vertical", "horizontal_and_vertical"])
def test_random_flip_flips_whole_images_in_training_only(rng, mode):
    x = rng.normal(size=(40, 3, 4, 2))
    y = check_layer(layers.get({"RandomFlip": {"mode": mode}}), x)  # same draws each run
    kinds = []
    for a, b in zip(x, y):
        options = {"none": a, "h": a[:, ::-1], "v": a[::-1], "hv": a[::-1, ::-1]}
        kinds.append(next(k for k, v in options.items() if np.array_equal(v, b)))
    allowed = {"horizontal": {"none", "h"}, "vertical": {"none", "v"},
               "horizontal_and_vertical": {"none", "h", "v", "hv"}}[mode]
    assert set(kinds) == allowed  # 40 images: every allowed kind occurs
    layer = layers.get({"RandomFlip": {"mode": mode}})
    layer.build((3, 4, 2), rng)
    np.testing.assert_array_equal(layer.forward(x, False)[0], x)  # inference: identity
    with pytest.raises(ConfigError, match="mode must be"):
        layers.get({"RandomFlip": {"mode": "diagonal"}})


def _resize_reference(x, height, width):
    """Bilinear resize with TensorFlow's half-pixel centres, cell by cell."""
    n, h, w, c = x.shape
    y = np.zeros((n, height, width, c))
    for i in range(height):
        for j in range(width):
            si = min(max((i + 0.5) * h / height - 0.5, 0.0), h - 1)
            sj = min(max((j + 0.5) * w / width - 0.5, 0.0), w - 1)
            i0, j0 = int(np.floor(si)), int(np.floor(sj))
            i1, j1 = min(i0 + 1, h - 1), min(j0 + 1, w - 1)
            a, b = si - i0, sj - j0
            y[:, i, j] = ((1 - a) * (1 - b) * x[:, i0, j0] + (1 - a) * b * x[:, i0, j1]
                          + a * (1 - b) * x[:, i1, j0] + a * b * x[:, i1, j1])
    return y


@pytest.mark.parametrize("height,width", [(4, 3), (9, 10), (6, 7)])
def test_resizing_bilinear_and_nearest(rng, height, width):
    """Checked once against real Keras 3.15.1 too (bilinear within 1e-6, nearest and
    CenterCrop exact; tests/data/keras3/native/check_export.py)."""
    x = rng.normal(size=(2, 6, 7, 3))
    y = check_layer(layers.get({"Resizing": {"height": height, "width": width}}), x)
    np.testing.assert_allclose(y, _resize_reference(x, height, width), atol=1e-12)
    near = check_layer(layers.get({"Resizing": {"height": height, "width": width,
                                                "interpolation": "nearest"}}), x)
    rows = np.minimum(np.floor((np.arange(height) + 0.5) * 6 / height).astype(int), 5)
    cols = np.minimum(np.floor((np.arange(width) + 0.5) * 7 / width).astype(int), 6)
    np.testing.assert_array_equal(near, x[:, rows][:, :, cols])


def test_center_crop_and_its_errors(rng):
    x = rng.normal(size=(2, 6, 7, 3))
    y = check_layer(layers.get({"CenterCrop": {"height": 3, "width": 4}}), x)
    np.testing.assert_array_equal(y, x[:, 1:4, 1:5])  # odd margins: the extra at the end
    with pytest.raises(ConfigError, match=r"crop \(8, 4\) is larger than the image"):
        layers.get({"CenterCrop": {"height": 8, "width": 4}}).build((6, 7, 3), rng)
    with pytest.raises(ConfigError, match="crop_to_aspect_ratio is not supported"):
        layers.get({"Resizing": {"height": 2, "width": 2, "crop_to_aspect_ratio": True}})


@pytest.mark.parametrize("axis", [3, [3], -1, [-1]])
def test_normalization_axis_naming_the_last_axis_is_accepted(rng, axis):
    """Keras's EfficientNet writes ``Normalization(axis=3)`` (stored as ``[3]``) on
    images: the last axis by its number is the same as -1, resolved at build time."""
    x = rng.normal(size=(2, 3, 3, 2))
    layer = layers.get({"Normalization": {"axis": axis, "mean": [1.0, -1.0],
                                          "variance": [4.0, 0.25]}})
    y = check_layer(layer, x)
    np.testing.assert_allclose(y, (x - [1.0, -1.0]) / [2.0, 0.5])


def test_normalization_axis_other_than_the_last_is_refused_at_build(rng):
    layer = layers.get({"Normalization": {"axis": [2]}})
    with pytest.raises(ConfigError, match=r"got axis \[2\] on inputs of rank 4 \(last axis 3\)"):
        layer.build((3, 3, 2), rng)
    for bad in ([1, 2], 0, -2, "x", True):
        with pytest.raises(ConfigError, match="only axis -1"):
            layers.get({"Normalization": {"axis": bad}})


def test_keras_normalization_with_axis_3_imports_and_predicts(tmp_path):
    """The Keras import path: a tf.keras 2 saved model whose Normalization records
    ``axis: [3]`` (as EfficientNetB0's does) imports with its adapted statistics."""
    import json

    import h5py

    from trainer.app import fit as api
    from trainer.keras_io.translate import translate_model
    from conftest import write_config

    record = {"class_name": "Normalization", "config": {
        "name": "normalization", "trainable": True, "dtype": "float32", "axis": [3],
        "mean": None, "variance": None, "invert": False,
        "batch_input_shape": [None, 4, 4, 3]}}
    keras = {"class_name": "Sequential", "config": {"name": "m", "layers": [
        record, {"class_name": "GlobalAveragePooling2D",
                 "config": {"name": "gap", "trainable": True, "dtype": "float32",
                            "data_format": "channels_last", "keepdims": False}}]}}
    model, problems = translate_model(keras)
    assert not problems.items and not problems.layers
    assert model["layers"][0]["Normalization"]["axis"] == [3]
    mean, var = np.array([1.0, 2.0, 3.0]), np.array([4.0, 9.0, 16.0])
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f.attrs["model_config"] = json.dumps(keras)
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [b"normalization", b"gap"]
        n = g.create_group("normalization")
        names = [b"normalization/mean:0", b"normalization/variance:0", b"normalization/count:0"]
        n.attrs["weight_names"] = names
        for name, v in zip(names, (mean, var, np.array(10.0))):
            n.create_dataset(name.decode(), data=np.asarray(v, np.float32))
        g.create_group("gap").attrs["weight_names"] = []
    cfg = api.load_config(write_config(tmp_path, """\
data: {train: {dataset: iris}}
model: {keras: m.h5}
compile: {loss: mse, optimizer: sgd}
"""))
    built = api.build(cfg)
    from trainer.build.keras_model import load_weights_option
    load_weights_option(cfg, built)
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype(np.float32)
    want = ((x - mean) / np.sqrt(var)).mean(axis=(1, 2))
    np.testing.assert_allclose(built.predict_on_batch([x])[0], want, rtol=1e-5)
