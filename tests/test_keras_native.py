"""Keras 3's native files: ``.keras`` archives and ``.weights.h5`` (trainer/keras_io/
native.py), checked against files real Keras 3.15.1 wrote (tests/data/keras3/native/
make_files.py) and Keras's own predictions for them."""

import io
import shutil
import zipfile

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT
from test_keras_io import imported
from trainer.cli import main
from trainer.errors import ConfigError, DataError
from trainer.keras_io import export
from trainer.keras_io.native import snake_case

NATIVE = ROOT / "tests" / "data" / "keras3" / "native"
PREDICTIONS = np.load(NATIVE / "native_predictions.npz")
MODELS = ["mlp", "cnn", "rnn", "attention", "nested_seq", "nested_fun", "text", "masking"]


def inputs(name):
    return [PREDICTIONS[k] for k in sorted(PREDICTIONS) if k.startswith(f"{name}_x")]


def keras_file(tmp_path, name, target="m.keras"):
    shutil.copy(NATIVE / name, tmp_path / target)
    return tmp_path / target


def rewrite_weights(archive, edit):
    """Rewrite the model.weights.h5 inside a .keras archive with ``edit(h5py.File)``."""
    with zipfile.ZipFile(archive) as z:
        members = {n: z.read(n) for n in z.namelist()}
    buffer = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buffer, "r+") as f:
        edit(f)
    members["model.weights.h5"] = buffer.getvalue()
    with zipfile.ZipFile(archive, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)


def drop_layer_names(f):
    """What Keras versions before the ``name`` attribute wrote."""
    f.visititems(lambda path, obj: obj.attrs.pop("name", None) if path.endswith("vars")
                 else None)


@pytest.mark.parametrize("name", MODELS)
def test_real_keras_files_import_and_predict_what_keras_predicted(tmp_path, name):
    """Layers of every family (convolutions, BatchNormalization, recurrent layers in
    Bidirectional/TimeDistributed, attention, nested models, the masks of
    Embedding(mask_zero) and Masking, which Keras 3 records as NotEqual/Any ops)."""
    keras_file(tmp_path, f"{name}.keras")
    _, model = imported(tmp_path, "  keras: m.keras")
    np.testing.assert_allclose(model.predict_on_batch(inputs(name))[0],
                               PREDICTIONS[f"{name}_y"], rtol=1e-5, atol=1e-6)
    export.write_h5(model, tmp_path / "back.h5")  # and out as Keras 2 writes it
    _, again = imported(tmp_path, "  keras: back.h5")
    np.testing.assert_array_equal(again.predict_on_batch(inputs(name))[0],
                                  model.predict_on_batch(inputs(name))[0])


@pytest.mark.parametrize("name", ["nested_fun", "rnn", "attention"])
def test_files_without_layer_names_load_by_keras_structure(tmp_path, name):
    """Without the vars groups' ``name`` attributes, layers are found as Keras finds
    them: class names in snake case, numbered per class in the config's layer order
    (nested_fun: 'pre' is dense and 'shared' dense_1, though created the other way)."""
    rewrite_weights(keras_file(tmp_path, f"{name}.keras"), drop_layer_names)
    _, model = imported(tmp_path, "  keras: m.keras")
    np.testing.assert_allclose(model.predict_on_batch(inputs(name))[0],
                               PREDICTIONS[f"{name}_y"], rtol=1e-5, atol=1e-6)


MLP_LAYERS = """\
  input_shape: [4]
  layers:
    - Dense: {{units: 5, activation: relu, name: {a}}}
    - Dropout: {{rate: 0.3}}
    - Dense: {{units: 3, activation: softmax, name: {b}}}
  weights: {weights}"""


def test_weights_file_into_a_config_written_by_hand(tmp_path):
    keras_file(tmp_path, "mlp.weights.h5", "w.weights.h5")
    expect = PREDICTIONS["mlp_y"]
    _, model = imported(tmp_path, MLP_LAYERS.format(a="dense", b="dense_1",
                                                    weights="w.weights.h5"))
    np.testing.assert_allclose(model.predict_on_batch(inputs("mlp"))[0], expect, rtol=1e-5)
    # the weights of a .keras archive, into a model written by hand
    keras_file(tmp_path, "mlp.keras")
    _, model = imported(tmp_path, MLP_LAYERS.format(a="dense", b="dense_1", weights="m.keras"))
    np.testing.assert_allclose(model.predict_on_batch(inputs("mlp"))[0], expect, rtol=1e-5)
    # other layer names: by name they are not found (the message says which); by_name
    # false walks the model's structure as Keras 3's load_weights does
    with pytest.raises(ConfigError, match="no weights for layer.*hidden.*the file has "
                                          "weights for: dense, dense_1"):
        imported(tmp_path, MLP_LAYERS.format(a="hidden", b="probs", weights="w.weights.h5"))
    _, model = imported(tmp_path, MLP_LAYERS.format(
        a="hidden", b="probs", weights="{path: w.weights.h5, by_name: false}"))
    np.testing.assert_allclose(model.predict_on_batch(inputs("mlp"))[0], expect, rtol=1e-5)


def test_weights_file_without_names_loads_by_the_models_layer_order(tmp_path):
    path = keras_file(tmp_path, "mlp.weights.h5", "w.weights.h5")
    with h5py.File(path, "r+") as f:
        drop_layer_names(f)
    _, model = imported(tmp_path, MLP_LAYERS.format(a="hidden", b="probs",
                                                    weights="w.weights.h5"))
    np.testing.assert_allclose(model.predict_on_batch(inputs("mlp"))[0],
                               PREDICTIONS["mlp_y"], rtol=1e-5)


def test_snake_case_is_keras_naming():
    assert [snake_case(c) for c in ("Dense", "PReLU", "Conv2DTranspose", "LSTM",
                                    "MultiHeadAttention", "GlobalAveragePooling1D")] == [
        "dense", "p_re_lu", "conv2d_transpose", "lstm", "multi_head_attention",
        "global_average_pooling1d"]


# -- what goes wrong, said once --------------------------------------------------------

def test_weights_that_do_not_fit_name_the_layer_and_shapes(tmp_path):
    path = keras_file(tmp_path, "mlp.weights.h5", "w.weights.h5")
    with pytest.raises(ConfigError, match=r"layer 'dense' weight 'kernel'.*needs shape "
                                          r"\(4, 6\), the file has \(4, 5\)"):
        imported(tmp_path, MLP_LAYERS.replace("units: 5", "units: 6").format(
            a="dense", b="dense_1", weights="w.weights.h5"))
    with h5py.File(path, "r+") as f:
        del f["layers/dense_1/vars/1"]
    with pytest.raises(ConfigError, match="layer 'dense_1' has 2 weights.*the file has 1"):
        imported(tmp_path, MLP_LAYERS.format(a="dense", b="dense_1", weights="w.weights.h5"))


def test_unknown_sub_layer_group_is_refused(tmp_path):
    path = keras_file(tmp_path, "mlp.weights.h5", "w.weights.h5")
    with h5py.File(path, "r+") as f:
        f.create_dataset("layers/dense/adapter/vars/0", data=np.zeros(3))
    with pytest.raises(DataError, match="adapter holds weights of a sub-layer"):
        imported(tmp_path, MLP_LAYERS.format(a="dense", b="dense_1", weights="w.weights.h5"))


def test_broken_archives_end_in_one_message(tmp_path):
    weights = "  keras: m.keras"
    path = keras_file(tmp_path, "mlp.keras")
    path.write_bytes(path.read_bytes()[:3000])  # cut short
    with pytest.raises(ConfigError, match="m.keras"):
        imported(tmp_path, weights)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "hello")
    with pytest.raises(ConfigError, match="without config.json; not a Keras 3 .keras file"):
        imported(tmp_path, weights)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", "{not json")
    with pytest.raises(ConfigError, match="config.json is not JSON"):
        imported(tmp_path, weights)
    # an architecture-only archive as the weights of a model
    with zipfile.ZipFile(NATIVE / "mlp.keras") as src, zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", src.read("config.json"))
        z.writestr("model.weights.json", "{}")  # sharded weights: not read
    with pytest.raises(DataError, match="without model.weights.h5 .sharded"):
        imported(tmp_path, MLP_LAYERS.format(a="dense", b="dense_1", weights="m.keras"))


def test_cli_validate_and_summary_of_a_keras_archive(tmp_path):
    keras_file(tmp_path, "attention.keras")
    cfg = tmp_path / "config.yaml"
    cfg.write_text("data:\n  train: {dataset: iris}\nmodel: {keras: m.keras}\n"
                   "compile: {loss: mse, optimizer: adam}\n")
    r = CliRunner().invoke(main, ["summary", str(cfg)])
    assert r.exit_code == 0, r.output
    assert "mha (MultiHeadAttention)" in r.output and "bahdanau" in r.output
