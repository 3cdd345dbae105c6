"""Keras interop: import Keras 2 / Keras 3 model files and weights, export back.

Keras is not installed: the files are written here with h5py from the documented
layout (trainer/keras_io/h5.py), and predictions are checked against the same weights
applied by NumPy.
"""

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT, write_config
from trainer.app import fit as api
from trainer.app.evaluate import evaluate
from trainer.config import families as registries
from trainer.cli import main
from trainer.errors import ConfigError
from trainer.keras_io import export
from trainer.build.keras_model import load_weights_option
from trainer.keras_io.translate import translate_model

needs_functional = pytest.mark.skipif(
    "Concatenate" not in registries.layers,
    reason="functional models and merge layers land with the functional branch")
needs_cnn = pytest.mark.skipif(
    not all(n in registries.layers for n in ("Conv2D", "MaxPooling2D", "BatchNormalization")),
    reason="Conv2D/MaxPooling2D/BatchNormalization land with the conv branch")


# -- Keras-format files, written by hand -------------------------------------------------

def k2(cls, **config):
    """A Keras 2 layer record."""
    return {"class_name": cls, "config": {"trainable": True, "dtype": "float32", **config}}


def k2_dense(name, units, activation="linear", **extra):
    return k2("Dense", name=name, units=units, activation=activation, use_bias=True,
              kernel_initializer={"class_name": "GlorotUniform", "config": {"seed": None}},
              bias_initializer={"class_name": "Zeros", "config": {}},
              kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
              kernel_constraint=None, bias_constraint=None, **extra)


def k3(cls, **config):
    """A Keras 3 layer record (module, registered_name, dtype policy)."""
    policy = {"module": "keras", "class_name": "DTypePolicy",
              "config": {"name": "float32"}, "registered_name": None}
    return {"module": "keras.layers", "class_name": cls, "registered_name": None,
            "config": {"trainable": True, "dtype": policy, **config}}


def k3_dense(name, units, activation="linear"):
    init = {"module": "keras.initializers", "class_name": "GlorotUniform",
            "config": {"seed": None}, "registered_name": None}
    return k3("Dense", name=name, units=units, activation=activation, use_bias=True,
              kernel_initializer=init,
              bias_initializer={"module": "keras.initializers", "class_name": "Zeros",
                                "config": {}, "registered_name": None},
              kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None,
              bias_constraint=None, lora_rank=None)


def keras2_mlp():
    """Sequential([Input(4), Dense(5, relu), Dropout(.3), Dense(3, softmax)]), Keras 2."""
    return {"class_name": "Sequential", "keras_version": "2.15.0", "backend": "tensorflow",
            "config": {"name": "sequential", "layers": [
                {"class_name": "InputLayer", "config": {
                    "batch_input_shape": [None, 4], "dtype": "float32", "sparse": False,
                    "ragged": False, "name": "dense_input"}},
                k2_dense("dense", 5, "relu", batch_input_shape=[None, 4]),
                k2("Dropout", name="dropout", rate=0.3, noise_shape=None, seed=None),
                k2_dense("dense_1", 3, "softmax")]}}


def keras3_mlp():
    return {"module": "keras", "class_name": "Sequential", "registered_name": None,
            "config": {"name": "sequential", "trainable": True, "layers": [
                {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
                 "config": {"batch_shape": [None, 4], "dtype": "float32", "sparse": False,
                            "name": "input_layer"}},
                k3_dense("dense", 5, "relu"),
                k3("Dropout", name="dropout", rate=0.3, seed=None, noise_shape=None),
                k3_dense("dense_1", 3, "softmax")],
                "build_input_shape": [None, 4]}}


def mlp_weights(seed=0):
    rng = np.random.default_rng(seed)
    return {"dense": [rng.normal(size=(4, 5)), rng.normal(size=5)],
            "dropout": [],
            "dense_1": [rng.normal(size=(5, 3)), rng.normal(size=3)]}


def write_weights(group, weights, style="keras2", as_str=False):
    """The Keras weight layout: layer_names, per layer weight_names and datasets."""
    def strings(values):
        return values if as_str else [v.encode("utf8") for v in values]

    group.attrs["layer_names"] = strings(list(weights))
    group.attrs["keras_version"] = "2.15.0" if style == "keras2" else "3.3.3"
    group.attrs["backend"] = "tensorflow"
    for layer in sorted(weights):  # Keras 3 writes groups sorted by name
        g = group.create_group(layer)
        suffixes = ["kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance"]
        names = [f"{layer}/{s}:0" if style == "keras2" else f"sequential/{layer}/{s}"
                 for s, _ in zip(suffixes, weights[layer])]
        g.attrs["weight_names"] = strings(names)
        for n, v in zip(names, weights[layer]):
            g.create_dataset(n, data=np.asarray(v, np.float32))


def write_saved_model(path, keras, weights, style="keras2"):
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps({k: keras[k] for k in ("class_name", "config")})
        f.attrs["keras_version"] = "2.15.0" if style == "keras2" else "3.3.3"
        f.attrs["backend"] = "tensorflow"
        write_weights(f.create_group("model_weights"), weights, style)
        if style == "keras3":
            f["model_weights"].create_group("top_level_model_weights").attrs["weight_names"] = []


CONFIG = """\
data:
  train: {{dataset: iris}}
  validation: {{split: 0.2}}
  preprocess:
    y: [{{to_categorical: {{num_classes: 3}}}}]
model:
{model}
compile:
  loss: categorical_crossentropy
  optimizer: adam
  metrics: [accuracy]
fit: {{epochs: 1, batch_size: 16}}
"""


def imported(folder, model_yaml):
    cfg = api.load_config(write_config(folder, CONFIG.format(model=model_yaml)))
    model = api.build(cfg)
    load_weights_option(cfg, model)
    return cfg, model


def numpy_mlp(x, w):
    h = np.maximum(x @ w["dense"][0] + w["dense"][1], 0)
    z = h @ w["dense_1"][0] + w["dense_1"][1]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def predict(model, x):
    return model.predict_on_batch([x])[0]


X = np.random.default_rng(1).normal(size=(7, 4))


# -- import ------------------------------------------------------------------------------

@pytest.mark.parametrize("style", ["keras2", "keras3"])
def test_saved_model_h5_imports_with_weights(tmp_path, style):
    keras = keras2_mlp() if style == "keras2" else keras3_mlp()
    w = mlp_weights()
    write_saved_model(tmp_path / "m.h5", keras, w, style)
    cfg, model = imported(tmp_path, "  keras: m.h5")
    assert [la.name for la in model.layers] == ["dense", "dropout", "dense_1"]
    assert cfg["model"]["input_shape"] == [4]
    assert cfg["model"]["layers"][0]["Dense"]["kernel_initializer"] == "GlorotUniform"
    np.testing.assert_allclose(predict(model, X), numpy_mlp(X, w), rtol=1e-5, atol=1e-6)


def test_to_json_file_plus_save_weights_file(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps(keras2_mlp()))
    w = mlp_weights(3)
    with h5py.File(tmp_path / "w.h5", "w") as f:  # save_weights: the layout at the root
        write_weights(f, w, as_str=True)
    cfg, model = imported(tmp_path, "  keras: m.json\n  weights: w.h5")
    np.testing.assert_allclose(predict(model, X), numpy_mlp(X, w), rtol=1e-5, atol=1e-6)
    # the architecture alone: weights initialised from the seed, not from a file
    cfg, model = imported(tmp_path, "  keras: m.json")
    assert "weights" not in cfg["model"]


def test_keras_model_fits_and_the_run_is_self_contained(tmp_path):
    write_saved_model(tmp_path / "m.h5", keras2_mlp(), mlp_weights())
    cfg = api.load_config(write_config(tmp_path, CONFIG.format(model="  keras: m.h5")))
    run, logs = api.fit(cfg, run_dir=tmp_path / "run", verbose=0)
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "keras:" not in saved and "Dense:" in saved
    assert np.isfinite(logs["loss"])
    assert set(evaluate(tmp_path / "run")) >= {"loss", "accuracy"}


def test_weights_chunked_attributes(tmp_path):
    """Attributes over HDF5's 64 KB limit are split as layer_names0, layer_names1, ..."""
    (tmp_path / "m.json").write_text(json.dumps(keras2_mlp()))
    w = mlp_weights(5)
    with h5py.File(tmp_path / "w.h5", "w") as f:
        write_weights(f, w)
        names = f.attrs["layer_names"]
        del f.attrs["layer_names"]
        f.attrs["layer_names0"], f.attrs["layer_names1"] = names[:1], names[1:]
    _, model = imported(tmp_path, "  keras: m.json\n  weights: w.h5")
    np.testing.assert_allclose(predict(model, X), numpy_mlp(X, w), rtol=1e-5, atol=1e-6)


def test_unsupported_layers_and_arguments_in_one_error(tmp_path):
    keras = keras2_mlp()
    layers = keras["config"]["layers"]
    layers[1]["config"]["kernel_constraint"] = {"class_name": "MaxNorm",
                                                "config": {"max_value": 2, "axis": 0}}
    layers.insert(2, k2("Lambda", name="lam", function="..."))
    layers.insert(3, k2("LocallyConnected1D", name="lc", filters=2))
    layers.insert(4, k2("Lambda", name="lam_2", function="..."))
    (tmp_path / "m.json").write_text(json.dumps(keras))
    with pytest.raises(ConfigError) as err:
        imported(tmp_path, "  keras: m.json")
    msg = str(err.value)
    assert "unsupported Keras layers: Lambda (lam, lam_2); LocallyConnected1D (lc)" in msg
    assert "layer 'dense' (Dense): argument kernel_constraint=" in msg
    assert "config.yaml:7:10" in msg  # where model.keras is written


def test_weight_shape_mismatch_names_layer_weight_and_shapes(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps(keras2_mlp()))
    w = mlp_weights()
    w["dense_1"][0] = np.zeros((6, 3))
    with h5py.File(tmp_path / "w.h5", "w") as f:
        write_weights(f, w)
    with pytest.raises(ConfigError) as err:
        imported(tmp_path, "  keras: m.json\n  weights: w.h5")
    assert ("layer 'dense_1' weight 'kernel' (file: 'dense_1/kernel:0'): the model needs "
            "shape (5, 3), the file has (6, 3)") in str(err.value)
    # skip_mismatch (with by_name) keeps that layer's initial weights, loads the rest
    _, model = imported(tmp_path, "  keras: m.json\n  weights: {path: w.h5, "
                                  "skip_mismatch: true}")
    np.testing.assert_array_equal(model.layers[0].params["kernel"], w["dense"][0].astype("f4"))


def test_by_name_false_loads_layers_with_weights_in_order(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps(keras2_mlp()))
    w = mlp_weights(2)
    renamed = {"first": w["dense"], "second": w["dense_1"]}
    with h5py.File(tmp_path / "w.h5", "w") as f:
        write_weights(f, renamed)
    with pytest.raises(ConfigError, match="no weights for layer.s. dense, dense_1"):
        imported(tmp_path, "  keras: m.json\n  weights: w.h5")
    _, model = imported(tmp_path, "  keras: m.json\n  weights: {path: w.h5, by_name: false}")
    np.testing.assert_allclose(predict(model, X), numpy_mlp(X, w), rtol=1e-5, atol=1e-6)


def test_saved_weights_only_file_as_model_keras_explains(tmp_path):
    with h5py.File(tmp_path / "w.h5", "w") as f:
        write_weights(f, mlp_weights())
    with pytest.raises(ConfigError, match="holds weights only"):
        imported(tmp_path, "  keras: w.h5")


# -- functional models: both inbound_nodes forms -----------------------------------------

def keras2_functional():
    """Two inputs, a shared Dense called on both, Concatenate, Dense output."""
    inp = [{"class_name": "InputLayer", "name": n, "inbound_nodes": [],
            "config": {"batch_input_shape": [None, 4], "dtype": "float32", "sparse": False,
                       "ragged": False, "name": n}} for n in ("a", "b")]
    shared = {**k2_dense("shared", 5, "relu"), "name": "shared",
              "inbound_nodes": [[["a", 0, 0, {}]], [["b", 0, 0, {}]]]}
    cat = {**k2("Concatenate", name="cat", axis=-1), "name": "cat",
           "inbound_nodes": [[["shared", 0, 0, {}], ["shared", 1, 0, {}]]]}
    out = {**k2_dense("out", 3, "softmax"), "name": "out",
           "inbound_nodes": [[["cat", 0, 0, {}]]]}
    return {"class_name": "Functional", "config": {
        "name": "model", "layers": [*inp, shared, cat, out],
        "input_layers": [["a", 0, 0], ["b", 0, 0]], "output_layers": [["out", 0, 0]]}}


def keras3_functional():
    def t(layer, node=0):
        return {"class_name": "__keras_tensor__",
                "config": {"shape": [None, 4], "dtype": "float32",
                           "keras_history": [layer, node, 0]}}

    inp = [{"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
            "name": n, "inbound_nodes": [],
            "config": {"batch_shape": [None, 4], "dtype": "float32", "sparse": False,
                       "name": n}} for n in ("a", "b")]
    shared = {**k3_dense("shared", 5, "relu"), "name": "shared",
              "inbound_nodes": [{"args": [t("a")], "kwargs": {}},
                                {"args": [t("b")], "kwargs": {}}]}
    cat = {**k3("Concatenate", name="cat", axis=-1), "name": "cat",
           "inbound_nodes": [{"args": [[t("shared"), t("shared", 1)]], "kwargs": {}}]}
    out = {**k3_dense("out", 3, "softmax"), "name": "out",
           "inbound_nodes": [{"args": [t("cat")], "kwargs": {"training": False}}]}
    return {"module": "keras", "class_name": "Functional", "registered_name": "Functional",
            "config": {"name": "model", "trainable": True, "layers": [*inp, shared, cat, out],
                       "input_layers": [["a", 0, 0], ["b", 0, 0]],
                       "output_layers": ["out", 0, 0]}}


def test_both_inbound_nodes_forms_translate_alike():
    two = translate_model(keras2_functional())
    three = translate_model(keras3_functional())
    assert two[0] == three[0]
    model, problems = two
    if "Concatenate" in registries.layers:
        assert not problems.layers and not problems.items
    assert model["inputs"] == {"a": {"shape": [4]}, "b": {"shape": [4]}}
    assert model["layers"][0]["Dense"]["inputs"] == "a"
    assert model["layers"][1] == {"call": "shared", "inputs": "b"}
    assert model["outputs"] == ["out"]
    if "Concatenate" in registries.layers:
        assert model["layers"][2]["Concatenate"]["inputs"] == ["shared", "shared[1]"]


@needs_functional
def test_functional_import_predictions_and_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    w = {"shared": [rng.normal(size=(4, 5)), rng.normal(size=5)], "cat": [],
         "out": [rng.normal(size=(10, 3)), rng.normal(size=3)]}
    write_saved_model(tmp_path / "m.h5", keras3_functional(), w, "keras3")
    _, model = imported(tmp_path, "  keras: m.h5")
    a, b = X, X[::-1].copy()

    def ref(a, b):
        def dense(x):
            return np.maximum(x @ w["shared"][0] + w["shared"][1], 0)
        z = np.concatenate([dense(a), dense(b)], axis=1) @ w["out"][0] + w["out"][1]
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    got = model.predict_on_batch([a, b])[0]
    np.testing.assert_allclose(got, ref(a, b), rtol=1e-5, atol=1e-6)
    export.write_h5(model, tmp_path / "back.h5")
    with h5py.File(tmp_path / "back.h5") as f:
        config = json.loads(f.attrs["model_config"])
    assert config["class_name"] == "Functional"
    assert [r["name"] for r in config["config"]["layers"]] == ["a", "b", "shared", "cat", "out"]
    assert config["config"]["layers"][3]["inbound_nodes"] == [
        [["shared", 0, 0, {}], ["shared", 1, 0, {}]]]
    _, again = imported(tmp_path, "  keras: back.h5")
    np.testing.assert_array_equal(again.predict_on_batch([a, b])[0], got)


# -- a small CNN -------------------------------------------------------------------------

@needs_cnn
def test_cnn_with_batchnorm_matches_numpy(tmp_path):
    rng = np.random.default_rng(5)
    conv = k2("Conv2D", name="conv2d", filters=2, kernel_size=[3, 3], strides=[1, 1],
              padding="valid", data_format="channels_last", dilation_rate=[1, 1], groups=1,
              activation="relu", use_bias=True,
              kernel_initializer={"class_name": "GlorotUniform", "config": {"seed": None}},
              bias_initializer={"class_name": "Zeros", "config": {}},
              kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
              kernel_constraint=None, bias_constraint=None, batch_input_shape=[None, 6, 6, 1])
    bn = k2("BatchNormalization", name="batch_normalization", axis=[3], momentum=0.99,
            epsilon=0.001, center=True, scale=True,
            beta_initializer={"class_name": "Zeros", "config": {}},
            gamma_initializer={"class_name": "Ones", "config": {}},
            moving_mean_initializer={"class_name": "Zeros", "config": {}},
            moving_variance_initializer={"class_name": "Ones", "config": {}},
            beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
            gamma_constraint=None)
    pool = k2("MaxPooling2D", name="max_pooling2d", pool_size=[2, 2], padding="valid",
              strides=[2, 2], data_format="channels_last")
    keras = {"class_name": "Sequential", "config": {"name": "cnn", "layers": [
        conv, bn, pool, k2("Flatten", name="flatten", data_format="channels_last"),
        k2_dense("dense", 3, "softmax")]}}
    w = {"conv2d": [rng.normal(size=(3, 3, 1, 2)), rng.normal(size=2)],
         "batch_normalization": [rng.uniform(0.5, 2, 2), rng.normal(size=2),
                                 rng.normal(size=2), rng.uniform(0.5, 2, 2)],
         "max_pooling2d": [], "flatten": [],
         "dense": [rng.normal(size=(8, 3)), rng.normal(size=3)]}
    write_saved_model(tmp_path / "m.h5", keras, w)
    _, model = imported(tmp_path, "  keras: m.h5")
    x = rng.normal(size=(3, 6, 6, 1))
    # by hand: valid 3×3 conv, relu, inference batch norm, 2×2 max pool, flatten, dense
    k, b = w["conv2d"]
    y = np.zeros((3, 4, 4, 2))
    for i in range(4):
        for j in range(4):
            y[:, i, j] = np.einsum("nabc,abcf->nf", x[:, i:i + 3, j:j + 3], k) + b
    y = np.maximum(y, 0)
    gamma, beta, mean, var = w["batch_normalization"]
    y = gamma * (y - mean) / np.sqrt(var + 0.001) + beta
    y = y.reshape(3, 2, 2, 2, 2, 2).max(axis=(2, 4)).reshape(3, -1)
    z = y @ w["dense"][0] + w["dense"][1]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(predict(model, x), e / e.sum(axis=1, keepdims=True),
                               rtol=1e-4, atol=1e-5)


# -- export and the round trip -----------------------------------------------------------

def test_round_trip_fit_export_import_identical_predictions(tmp_path):
    model_yaml = ("  input_shape: [4]\n  layers:\n"
                  "    - Dense: {units: 6, activation: tanh, kernel_regularizer: {l2: 0.01}}\n"
                  "    - Dropout: 0.1\n"
                  "    - Dense: {units: 3, activation: softmax}")
    cfg_path = write_config(tmp_path, CONFIG.format(model=model_yaml))
    runner = CliRunner()
    r = runner.invoke(main, ["fit", str(cfg_path), "-q", "--run-dir", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["export", str(tmp_path / "run"), "--format", "keras-h5",
                             str(tmp_path / "out.h5")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["export", str(tmp_path / "run"), str(tmp_path / "out.json")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["export", str(tmp_path / "run"), str(tmp_path / "out.keras")])
    assert r.exit_code == 0 and "out.keras" in r.output, r.output

    with h5py.File(tmp_path / "out.h5") as f:  # what Keras 2's load_model reads
        config = json.loads(f.attrs["model_config"])
        assert f.attrs["keras_version"] and f.attrs["backend"]
        root = f["model_weights"]
        assert [n.decode() for n in root.attrs["layer_names"]] == ["dense", "dropout", "dense_1"]
        assert [n.decode() for n in root["dense"].attrs["weight_names"]] == [
            "dense/kernel:0", "dense/bias:0"]
        assert root["dense"]["dense/kernel:0"].shape == (4, 6)
    assert config["class_name"] == "Sequential"
    inp, dense = config["config"]["layers"][:2]
    assert inp == {"class_name": "InputLayer", "config": {
        "batch_input_shape": [None, 4], "dtype": "float32", "sparse": False, "ragged": False,
        "name": "dense_input"}}
    assert dense["config"]["kernel_initializer"] == {"class_name": "GlorotUniform",
                                                     "config": {}}
    assert dense["config"]["kernel_regularizer"] == {"class_name": "L2",
                                                     "config": {"l2": 0.01}}
    assert dense["config"]["activation"] == "tanh"
    assert json.loads((tmp_path / "out.json").read_text())["config"] == config["config"]

    original = api.build(api.load_config(tmp_path / "run" / "config.yaml"))
    from trainer.store import checkpoint
    checkpoint.load(tmp_path / "run" / "checkpoints" / "last.h5", original)
    _, back = imported(tmp_path, "  keras: out.h5")
    np.testing.assert_array_equal(predict(back, X.astype("f4")),
                                  predict(original, X.astype("f4")))
    assert back.layers[0].kernel_regularizer.l2 == pytest.approx(0.01)
    _, back3 = imported(tmp_path, "  keras: out.keras")  # Keras 3's archive
    np.testing.assert_array_equal(predict(back3, X.astype("f4")),
                                  predict(original, X.astype("f4")))
    # and the imported model fine-tunes like any other
    cfg = api.load_config(write_config(tmp_path, CONFIG.format(model="  keras: out.h5"),
                                       "tune.yaml"))
    _, logs = api.fit(cfg, run_dir=tmp_path / "tuned", verbose=0)
    assert np.isfinite(logs["loss"])


def test_export_needs_a_run_and_a_format(tmp_path):
    r = CliRunner().invoke(main, ["export", str(tmp_path), str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and "not a run folder" in r.output


def test_initializers_translate_and_unknown_ones_need_weights():
    keras = keras2_mlp()
    dense = keras["config"]["layers"][1]["config"]
    dense["kernel_initializer"] = {"class_name": "VarianceScaling", "config": {
        "scale": 2.0, "mode": "fan_in", "distribution": "truncated_normal", "seed": None}}
    dense["bias_initializer"] = {"class_name": "RandomNormal",
                                 "config": {"mean": 0.0, "stddev": 0.1, "seed": 3}}
    dense["kernel_regularizer"] = {"class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.5}}
    model, problems = translate_model(keras)
    args = model["layers"][0]["Dense"]
    assert args["kernel_initializer"] == "he_normal"
    assert args["bias_initializer"] == {"RandomNormal": {"mean": 0.0, "stddev": 0.1}}
    assert args["kernel_regularizer"] == {"L1L2": {"l1": 0.0, "l2": 0.5}}
    assert not problems.items
    dense["kernel_initializer"] = {"class_name": "NoSuchInit", "config": {}}
    _, problems = translate_model(keras)
    assert problems.items == ["layer 'dense' argument kernel_initializer: unknown "
                              "initializer 'NoSuchInit'"]
    model, problems = translate_model(keras, lenient_init=True)  # weights come from a file
    assert not problems.items and "kernel_initializer" not in model["layers"][0]["Dense"]


def test_cli_summary_and_validate_of_a_keras_model(tmp_path):
    write_saved_model(tmp_path / "m.h5", keras2_mlp(), mlp_weights())
    path = write_config(tmp_path, CONFIG.format(model="  keras: m.h5"))
    r = CliRunner().invoke(main, ["summary", str(path)])
    assert r.exit_code == 0 and "dense_1" in r.output, r.output
    keras = keras2_mlp()
    keras["config"]["layers"].append(k2("Lambda", name="lam"))
    (tmp_path / "bad.json").write_text(json.dumps(keras))
    path = write_config(tmp_path, CONFIG.format(model="  keras: bad.json"), "bad.yaml")
    r = CliRunner().invoke(main, ["validate", str(path)])
    assert r.exit_code == 2 and "Lambda (lam)" in r.output, r.output


@pytest.mark.skipif("LSTM" not in registries.layers, reason="LSTM lands with the seq branch")
def test_lstm_weights_in_keras_gate_order(tmp_path):
    """Keras 2 LSTM: kernel (in, 4u), recurrent_kernel (u, 4u), bias (4u), gates i, f, c, o."""
    rng = np.random.default_rng(6)
    lstm = k2("LSTM", name="lstm", units=3, activation="tanh", recurrent_activation="sigmoid",
              use_bias=True, return_sequences=False, return_state=False, go_backwards=False,
              stateful=False, unroll=False, time_major=False, implementation=2,
              kernel_initializer={"class_name": "GlorotUniform", "config": {"seed": None}},
              recurrent_initializer={"class_name": "Orthogonal",
                                     "config": {"gain": 1.0, "seed": None}},
              bias_initializer={"class_name": "Zeros", "config": {}}, unit_forget_bias=True,
              kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
              activity_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
              bias_constraint=None, dropout=0.0, recurrent_dropout=0.0,
              batch_input_shape=[None, 5, 2])
    keras = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        lstm, k2_dense("dense", 2)]}}
    w = {"lstm": [rng.normal(size=(2, 12)) * 0.5, rng.normal(size=(3, 12)) * 0.5,
                  rng.normal(size=12) * 0.5],
         "dense": [rng.normal(size=(3, 2)), rng.normal(size=2)]}
    write_saved_model(tmp_path / "m.h5", keras, w)
    _, model = imported(tmp_path, "  keras: m.h5")
    x = rng.normal(size=(4, 5, 2))

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    k, r, b = w["lstm"]
    h = c = np.zeros((4, 3))
    for t in range(5):
        z = x[:, t] @ k + h @ r + b
        i, f, g, o = z[:, :3], z[:, 3:6], z[:, 6:9], z[:, 9:]
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
    np.testing.assert_allclose(predict(model, x), h @ w["dense"][0] + w["dense"][1],
                               rtol=1e-4, atol=1e-5)


# -- files written by real Keras (3.15.1; tests/data/keras3/make_files.py) ---------------

REAL = ROOT / "tests" / "data" / "keras3"
REAL_NEEDS = {"mlp": (), "fun": ("Concatenate",),
              "cnn": ("Conv2D", "BatchNormalization", "MaxPooling2D"),
              "lstm": ("LSTM",), "gru": ("GRU",),
              "nested_seq": ("Conv2D", "BatchNormalization"),  # a frozen base model inside
              "nested_fun": ("Concatenate", "BatchNormalization")}  # functional in functional


@pytest.mark.parametrize("name", list(REAL_NEEDS))
def test_real_keras3_saved_models_predict_the_same(tmp_path, name):
    missing = [n for n in REAL_NEEDS[name] if n not in registries.layers]
    if missing:
        pytest.skip(f"{', '.join(missing)} not registered yet")
    import shutil
    shutil.copy(REAL / f"{name}.h5", tmp_path / "m.h5")
    _, model = imported(tmp_path, "  keras: m.h5")
    data = np.load(REAL / "predictions.npz")
    x = data[f"{name}_x"]
    xs = [x, x[::-1].copy()] if name == "fun" else [x]
    np.testing.assert_allclose(model.predict_on_batch(xs)[0], data[f"{name}_y"],
                               rtol=1e-5, atol=1e-6)
    export.write_h5(model, tmp_path / "back.h5")  # and back, as Keras 2 writes it
    _, again = imported(tmp_path, "  keras: back.h5")
    np.testing.assert_array_equal(again.predict_on_batch(xs)[0], model.predict_on_batch(xs)[0])


def test_keras_2_2_sequential_config_is_a_list():
    """Standalone Keras 2.2 wrote a Sequential's config as the list of its layers."""
    layers = keras2_mlp()["config"]["layers"][1:]
    layers[0]["config"]["kernel_initializer"] = {"class_name": "VarianceScaling", "config": {
        "scale": 1.0, "mode": "fan_avg", "distribution": "uniform", "seed": None}}
    model, problems = translate_model({"class_name": "Sequential", "config": layers})
    assert not problems.items and not problems.layers
    assert model["input_shape"] == [4]
    assert [next(iter(s)) for s in model["layers"]] == ["Dense", "Dropout", "Dense"]
    assert model["layers"][0]["Dense"]["kernel_initializer"] == "glorot_uniform"


def test_weightless_frozen_layers_and_keras_bookkeeping_are_dropped():
    keras = keras2_mlp()
    keras["config"]["layers"][2]["config"]["trainable"] = False  # a frozen Dropout
    keras["config"]["layers"][1]["config"]["trainable"] = False  # a frozen Dense
    model, problems = translate_model(keras)
    assert not problems.items
    assert "trainable" not in model["layers"][1]["Dropout"]
    assert model["layers"][0]["Dense"]["trainable"] is False


def test_nested_keras2_sequential_is_spliced_and_its_weights_found(tmp_path):
    """Sequential([base, Dense]) with base a frozen Sequential: Keras saves base's weights
    as one group `base` holding `dense/kernel:0`, ..."""
    base = {"class_name": "Sequential", "config": {"name": "base", "trainable": False, "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4],
                                                "dtype": "float32", "name": "base_input"}},
        k2_dense("dense", 5, "relu", trainable=False)]}}
    keras = {"class_name": "Sequential", "config": {"name": "outer", "layers": [
        base, k2("Dropout", name="dropout", rate=0.3), k2_dense("dense_1", 3, "softmax")]}}
    (tmp_path / "m.json").write_text(json.dumps(keras))
    w = mlp_weights(7)
    with h5py.File(tmp_path / "w.h5", "w") as f:
        f.attrs["layer_names"] = [b"base", b"dropout", b"dense_1"]
        g = f.create_group("base")
        g.attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0"]
        g["dense/kernel:0"], g["dense/bias:0"] = w["dense"]
        f.create_group("dropout").attrs["weight_names"] = np.array([], "S")
        g = f.create_group("dense_1")
        g.attrs["weight_names"] = [b"dense_1/kernel:0", b"dense_1/bias:0"]
        g["dense_1/kernel:0"], g["dense_1/bias:0"] = w["dense_1"]
    cfg, model = imported(tmp_path, "  keras: m.json\n  weights: w.h5")
    assert cfg["model"]["input_shape"] == [4]
    assert [la.name for la in model.layers] == ["dense", "dropout", "dense_1"]
    assert model.layers[0].trainable is False
    np.testing.assert_allclose(predict(model, X), numpy_mlp(X, w), rtol=1e-5, atol=1e-6)


def test_keras_file_and_layers_together_is_an_error(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps(keras2_mlp()))
    with pytest.raises(ConfigError, match="drop model.input_shape, model.layers"):
        imported(tmp_path, "  keras: m.json\n  input_shape: [4]\n  layers: [Flatten]")


def test_noise_and_masking_layers_import_as_keras_writes_them(tmp_path):
    """Keras 2 records of the noise layers and ThresholdedReLU (seed, noise_shape and
    dtype as Keras writes them) import; all are the identity at inference here, so the
    predictions are the plain MLP's."""
    keras = keras2_mlp()
    layers = keras["config"]["layers"]
    layers[2:3] = [
        k2("GaussianNoise", name="noise", stddev=0.1, seed=None),
        k2("GaussianDropout", name="gdrop", rate=0.2, seed=None),
        k2("AlphaDropout", name="adrop", rate=0.1, noise_shape=None, seed=None),
        k2("ThresholdedReLU", name="thr", theta=0.0),
    ]
    (tmp_path / "m.json").write_text(json.dumps(keras))
    w = mlp_weights()
    _, model = imported(tmp_path, "  keras: m.json")
    for layer in model.layers:
        if layer.name in w:
            layer.set_weights(w[layer.name])
    assert [type(layer).__name__ for layer in model.layers][1:5] == \
        ["GaussianNoise", "GaussianDropout", "AlphaDropout", "ThresholdedReLU"]
    # relu output is >= 0, so ThresholdedReLU(theta=0) changes nothing but exact zeros
    np.testing.assert_allclose(predict(model, X), numpy_mlp(X, w), rtol=1e-5, atol=1e-6)
