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
from trainer.keras_io import export, keras3
from trainer.keras_io.native import snake_case

NATIVE = ROOT / "tests" / "data" / "keras3" / "native"
PREDICTIONS = np.load(NATIVE / "native_predictions.npz")
#: ops.gelu(approximate=True) imports as Activation({gelu: {approximate: true}}), which
#: neither Keras's Activation layer can hold: export refuses it with a message
NO_LAYER_FORM = ("ops",)
MODELS = ["mlp", "cnn", "rnn", "attention", "nested_seq", "nested_fun", "text", "masking",
          "encoder", "ops", "preprocess"]


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
    if name in NO_LAYER_FORM:
        with pytest.raises(ConfigError, match="gelu with arguments .* has no Keras 2 string"):
            export.write_h5(model, tmp_path / "back.h5")
        return
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


# -- export: .keras archives (checked by hand against Keras 3.15.1's load_model, see
# tests/data/keras3/native/check_export.py) ----------------------------------------

def build(model_cfg):
    from pathlib import Path

    from trainer.build.builder import build_model
    from trainer.config.loader import from_dict

    return build_model(from_dict({"data": {"train": {"dataset": "iris"}}, "model": model_cfg,
                                  "compile": {"loss": "mse", "optimizer": "sgd"}},
                                 Path("t.yaml")))


@pytest.mark.parametrize("name", [m for m in MODELS if m not in NO_LAYER_FORM])
def test_keras_archive_export_reads_back_identically(tmp_path, name):
    keras_file(tmp_path, f"{name}.keras")
    _, model = imported(tmp_path, "  keras: m.keras")
    keras3.write_keras(model, tmp_path / "back.keras")
    _, again = imported(tmp_path, "  keras: back.keras")
    np.testing.assert_array_equal(again.predict_on_batch(inputs(name))[0],
                                  model.predict_on_batch(inputs(name))[0])


def test_keras_archive_layout_follows_keras(tmp_path):
    """config.json in Keras 3's form (module, batch_shape, calls as args/kwargs of
    __keras_tensor__s), weights under snake_case class names numbered per class, with
    the layer names as attributes and sub-layers where Keras keeps them."""
    import json

    model = build({"inputs": {"q": {"shape": [3, 4]}, "v": {"shape": [5, 4]}}, "layers": [
        {"MultiHeadAttention": {"name": "att", "num_heads": 2, "key_dim": 2,
                                "inputs": ["q", "v"]}},
        {"Bidirectional": {"name": "bi", "layer": {"LSTM": {"units": 2}}}},
        {"Dense": {"name": "d1", "units": 3}},
        {"ThresholdedReLU": {"name": "thr", "theta": 0.5}},
        {"Dense": {"name": "d2", "units": 2}}], "outputs": ["d2"]})
    keras3.write_keras(model, tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        assert set(z.namelist()) == {"metadata.json", "config.json", "model.weights.h5"}
        config = json.loads(z.read("config.json"))
        with h5py.File(io.BytesIO(z.read("model.weights.h5"))) as f:
            assert f["layers/dense/vars"].attrs["name"] == "d1"
            assert f["layers/dense_1/vars"].attrs["name"] == "d2"
            assert f["layers/input_layer_1/vars"].attrs["name"] == "v"
            assert f["layers/multi_head_attention/query_dense/vars/0"].shape == (4, 2, 2)
            assert f["layers/multi_head_attention/output_dense/vars/1"].shape == (4,)
            assert f["layers/bidirectional/backward_layer/cell/vars/1"].shape == (2, 8)
    assert config["class_name"] == "Functional"
    records = {r["name"]: r for r in config["config"]["layers"]}
    assert records["q"]["config"]["batch_shape"] == [None, 3, 4]
    call = records["att"]["inbound_nodes"][0]
    assert [a["config"]["keras_history"] for a in call["args"]] == [["q", 0, 0], ["v", 0, 0]]
    assert call["args"][1]["config"]["shape"] == [None, 5, 4]
    assert records["bi"]["config"]["layer"]["module"] == "keras.layers"
    # Keras 3 has no ThresholdedReLU: ReLU with the threshold computes it
    assert records["thr"]["class_name"] == "ReLU"
    assert records["thr"]["config"]["threshold"] == 0.5
    assert config["config"]["output_layers"] == ["d2", 0, 0]


def test_hard_sigmoid_gates_convert_exactly_and_other_uses_are_refused(tmp_path):
    """Keras 3's hard_sigmoid is relu6(x + 3) / 6, ours (Keras 2's) clip(0.2 x + 0.5):
    recurrent gates (our default) go out with their weights scaled by 1.2 and come
    back divided; a Dense with it can't be written."""
    model = build({"input_shape": [4, 3], "layers": [
        {"Bidirectional": {"layer": {"GRU": {"units": 2, "return_sequences": True}}}},
        {"LSTM": {"units": 3}}]})
    rng = np.random.default_rng(0)
    for layer in model.layers:
        layer.set_weights([rng.normal(0, 2, w.shape).astype(w.dtype)
                           for w in layer.get_weights()])
    x = rng.normal(size=(2, 4, 3)).astype("f4")
    keras3.write_keras(model, tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        with h5py.File(io.BytesIO(z.read("model.weights.h5"))) as f:
            kernel = f["layers/lstm/cell/vars/0"][()]
    ours = model.layers[1].params["kernel"]
    np.testing.assert_allclose(kernel[:, :3], ours[:, :3] * 1.2, rtol=1e-6)  # i
    np.testing.assert_array_equal(kernel[:, 6:9], ours[:, 6:9])  # c: tanh, unscaled
    _, back = imported(tmp_path, "  keras: m.keras")
    np.testing.assert_allclose(back.predict_on_batch([x])[0], model.predict_on_batch([x])[0],
                               rtol=1e-5, atol=1e-6)
    dense = build({"input_shape": [3], "layers": [
        {"Dense": {"name": "gate", "units": 2, "activation": "hard_sigmoid"}}]})
    with pytest.raises(ConfigError, match="layer 'gate' uses hard_sigmoid.*relu6"):
        keras3.write_keras(dense, tmp_path / "d.keras")
    assert not (tmp_path / "d.keras").exists()


def test_keras3_hard_sigmoid_outside_archive_gates_is_named():
    """A Keras 3 file (its keras_version) whose hard_sigmoid trainer would compute
    differently is a problem named at import, not a silent difference; Keras 2's is
    ours."""
    from test_keras_io import keras3_mlp
    from trainer.keras_io.translate import translate_model

    keras = keras3_mlp()
    keras["config"]["layers"][1]["config"]["activation"] = "hard_sigmoid"
    keras["keras_version"] = "3.15.1"
    _, problems = translate_model(keras)
    assert any("Keras 3's hard_sigmoid is relu6(x + 3) / 6" in p for p in problems.items)
    keras["keras_version"] = "2.15.0"
    model, problems = translate_model(keras)
    assert not problems.items
    assert model["layers"][0]["Dense"]["activation"] == "hard_sigmoid"


# -- hostile archives ---------------------------------------------------------------------

def _mutate_config(config, rng):
    """Delete a key of, or give another type to, one randomly chosen dict in the tree."""
    dicts = []

    def walk(node):
        if isinstance(node, dict):
            dicts.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(config)
    target = dicts[rng.integers(len(dicts))]
    if not target:
        return "an empty dict left alone"
    key = sorted(target)[rng.integers(len(target))]
    if rng.random() < 0.4:
        del target[key]
        return f"deleted {key!r}"
    target[key] = [None, 7, -1, "x", [], {}, [["a", 0, 0]], 1e30][rng.integers(8)]
    return f"{key!r} = {target[key]!r}"


def _mutate_weights(f, rng):
    """Delete a group or dataset, rename one, or give a dataset another shape/type."""
    import h5py

    items = []
    f.visititems(lambda name, obj: items.append((name, obj)))
    name, obj = items[rng.integers(len(items))]
    choice = rng.integers(4)
    if choice == 0 or not isinstance(obj, h5py.Dataset):
        if choice == 1 and "vars" in name.split("/")[-1:]:
            obj.attrs["name"] = [1, 2] if rng.random() < 0.5 else "other"
            return f"{name}: name attribute changed"
        del f[name]
        return f"deleted {name}"
    if choice == 1:
        f.move(name, name + "_moved")
        return f"moved {name}"
    data = obj[()]
    del f[name]
    f[name] = (np.zeros(np.asarray(data).size + 1) if choice == 2
               else np.array([b"text"]))
    return f"{name}: reshaped or retyped"


def test_mutated_archives_end_in_one_clear_message(tmp_path):
    """Derandomized mutations of real Keras archives — the zip cut short, bytes flipped,
    config.json keys deleted or retyped, weight groups deleted, moved or reshaped —
    each imports or stops with trainer's own error, never another exception."""
    import json

    from trainer.errors import TrainerError

    rng = np.random.default_rng(20261127)
    failures = []
    for case in range(60):
        name = ["mlp", "rnn", "attention", "nested_fun", "encoder"][case % 5]
        path = keras_file(tmp_path, f"{name}.keras")
        kind = case // 5 % 4
        if kind == 0:
            data = path.read_bytes()
            cut = int(rng.integers(len(data)))
            flips = rng.integers(0, len(data), 8)
            data = bytearray(data[:cut] if rng.random() < 0.5 else data)
            for i in flips[flips < len(data)]:
                data[i] ^= 0xFF
            path.write_bytes(bytes(data))
            what = "bytes cut or flipped"
        elif kind in (1, 2):
            with zipfile.ZipFile(path) as z:
                members = {n: z.read(n) for n in z.namelist()}
            config = json.loads(members["config.json"])
            what = _mutate_config(config, rng)
            members["config.json"] = json.dumps(config)
            with zipfile.ZipFile(path, "w") as z:
                for n, d in members.items():
                    z.writestr(n, d)
        else:
            box = {}
            rewrite_weights(path, lambda f: box.setdefault("what", _mutate_weights(f, rng)))
            what = box["what"]
        try:
            _, model = imported(tmp_path, "  keras: m.keras")
            model.predict_on_batch(inputs(name))
        except TrainerError:
            pass
        except Exception as exc:  # noqa: BLE001 - collected and reported below
            failures.append(f"{name} ({what}): {type(exc).__name__}: {exc}")
    assert not failures, "\n".join(failures)


def test_weights_larger_than_the_free_disk_are_not_extracted(tmp_path, monkeypatch):
    import shutil as sh
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(sh, "disk_usage", lambda _: usage(100, 90, 10))
    keras_file(tmp_path, "mlp.keras")
    with pytest.raises(DataError, match=r"extracting model.weights.h5 needs \d+ bytes, 10 "
                                        r"are free"):
        imported(tmp_path, "  keras: m.keras")


def test_an_operation_on_a_constant_is_named(tmp_path):
    """`Dense(...)(x) * 2.0` in Keras 3 is an operation with a constant operand: no
    layer of ours computes it, and the message says which operation."""
    keras_file(tmp_path, "ops_constant.keras")
    with pytest.raises(ConfigError, match=r"operation 'multiply(_\d+)?' \(Multiply\) takes a "
                                          r"constant"):
        imported(tmp_path, "  keras: m.keras")
