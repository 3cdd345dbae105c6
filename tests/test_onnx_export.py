"""ONNX export (trainer/onnx_io), checked by ONNX Runtime: for every example config and
every layer family, onnxruntime (CPUExecutionProvider) predicts what trainer predicts
within 1e-5 (max abs), at batch sizes 1 and 7 (the dynamic batch axis), with masked
sequences and a functional model with two inputs and two outputs; and the bad inputs
of `trainer export RUN model.onnx`, each with its documented exit code."""

import errno
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT, write_config
from trainer.app import fit as api
from trainer.cli import main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from trainer.onnx_io import OPSET, export_model  # noqa: E402
from trainer.onnx_io.graph import build_proto  # noqa: E402

TOL = 1e-5
CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))


def _families():
    """The model suite that covers every layer family (the Keras 3 export check's)."""
    path = ROOT / "tests/data/keras3/native/check_export.py"
    spec = importlib.util.spec_from_file_location("check_export", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MODELS


FAMILIES = _families()


def build(model_cfg):
    from trainer.build.builder import build_model
    from trainer.config.loader import from_dict

    return build_model(from_dict({"data": {"train": {"dataset": "iris"}}, "model": model_cfg,
                                  "compile": {"loss": "mse", "optimizer": "sgd"}},
                                 Path("t.yaml")))


def randomize(model, seed=0):
    """Non-trivial weights everywhere (variances and gammas around 1)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights([
            (rng.uniform(0.5, 1.5, w.shape) if ("variance" in n or "gamma" in n)
             else rng.normal(0, 0.5, w.shape)).astype(w.dtype)
            for n, w in zip(layer.weight_names(), layer.get_weights())])


def sample_inputs(model, batch, seed=1, ids_below=3, pad_from=None):
    """Inputs of ``batch`` rows: token ids (with trailing and inner zeros: masked
    steps) for integer inputs, normal floats otherwise; unknown sizes become 5."""
    rng = np.random.default_rng(seed)
    xs = []
    for i, shape in enumerate(model.graph.shapes[:model.graph.n_inputs]):
        shape = tuple(d or 5 for d in shape)
        if i in model._int_inputs:
            x = rng.integers(1, ids_below, (batch, *shape)).astype(np.int64)
            x[0, shape[0] // 2:] = 0  # padding at the end
            if batch > 2:
                x[2, 1] = 0  # a masked step in the middle
        else:
            x = rng.normal(size=(batch, *shape)).astype(np.float32)
            if pad_from is not None:
                x[0, pad_from:] = 0
        xs.append(x)
    return xs


def onnx_predict(proto, model, xs):
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(model.output_names, dict(zip(model.input_names, xs)))


def assert_same(model, proto, xs, tol=TOL):
    ours = model.predict_on_batch([x.copy() for x in xs])
    theirs = onnx_predict(proto, model, xs)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        assert float(np.abs(a - b).max()) <= tol, float(np.abs(a - b).max())


# -- exactness --------------------------------------------------------------------------

@pytest.mark.parametrize("name", CONFIGS)
def test_every_example_config_predicts_what_trainer_predicts(name, tmp_path, monkeypatch):
    import keras_fakes  # Keras's datasets and weights, fabricated: no network here

    text = (ROOT / "configs" / name).read_text()
    keras_fakes.place(monkeypatch, tmp_path / "keras_home", ["mnist", "cifar10"])
    if "application: MobileNet" in text:
        keras_fakes.place_weights(tmp_path / "keras_home", "MobileNet", alpha=0.25,
                                  include_top=False, input_shape=[32, 32, 3])
    cfg = api.load_config(ROOT / "configs" / name)
    model = api.build(cfg)
    api.initial_weights(cfg, model)  # imported weights where the config names them
    proto = build_proto(model)
    vocab = min([layer.input_dim for layer in model.layers if hasattr(layer, "input_dim")]
                or [3])
    for batch in (1, 7):
        assert_same(model, proto, sample_inputs(model, batch, ids_below=vocab))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_layer_family_predicts_what_trainer_predicts(name):
    model = build(FAMILIES[name])
    randomize(model)
    proto = build_proto(model)
    for batch in (1, 7):
        xs = sample_inputs(model, batch, ids_below=10, pad_from=3)
        assert_same(model, proto, xs)


def seq(shape, layers):
    return {"input_shape": shape, "layers": layers}


MORE = {  # what the family suite leaves out
    "recurrent_masked": {"inputs": {"ids": {"shape": [7]}}, "layers": [
        {"Embedding": {"name": "emb", "input_dim": 9, "output_dim": 4, "mask_zero": True,
                       "inputs": "ids"}},
        {"LSTM": {"name": "l1", "units": 5, "return_sequences": True, "inputs": "emb"}},
        {"GRU": {"name": "g1", "units": 4, "return_sequences": True, "go_backwards": True,
                 "inputs": "l1"}},
        {"Bidirectional": {"name": "bi", "layer": {"GRU": {"units": 3, "return_sequences": True,
                                                           "reset_after": True}},
                           "merge_mode": "ave", "inputs": "g1"}},
        {"SimpleRNN": {"name": "s1", "units": 3, "activation": "relu", "inputs": "bi"}},
        {"Dense": {"name": "out", "units": 2, "inputs": "s1"}}], "outputs": ["out"]},
    "recurrent_native": seq([6, 3], [
        {"GRU": {"units": 4, "return_sequences": True, "go_backwards": True}},
        {"GRU": {"units": 3, "return_sequences": True, "reset_after": True,
                 "activation": "relu"}},
        {"SimpleRNN": {"units": 3, "return_sequences": True, "activation": "linear",
                       "go_backwards": True}},
        {"LSTM": {"units": 2, "return_sequences": True, "activation": {"elu": {"alpha": 0.5}},
                  "go_backwards": True}},
        {"Bidirectional": {"layer": {"LSTM": {"units": 2, "return_sequences": True}},
                           "merge_mode": "mul"}},
        {"SimpleRNN": {"units": 2, "activation": "swish"}}]),
    "lstm_gates": seq([6, 3], [
        {"LSTM": {"units": 4, "return_sequences": True, "recurrent_activation": "sigmoid"}},
        {"LSTM": {"units": 4, "recurrent_activation": "hard_sigmoid", "go_backwards": True}}]),
    "convs_same_strided": seq([9, 10, 3], [
        {"Conv2D": {"filters": 4, "kernel_size": 4, "strides": 3, "padding": "same"}},
        {"Conv2D": {"filters": 3, "kernel_size": [2, 3], "dilation_rate": 2, "padding": "same",
                    "activation": "hard_sigmoid"}},
        {"AveragePooling2D": {"pool_size": 3, "strides": 2, "padding": "same"}},
        {"MaxPooling2D": {"pool_size": 2, "padding": "same"}},
        {"BatchNormalization": {}}, {"Flatten": {}}, {"Dense": {"units": 3, "activation": "tanh"}}]),
    "conv1d_causal": seq([8, 2], [
        {"Conv1D": {"filters": 3, "kernel_size": 3, "padding": "causal", "dilation_rate": 2}},
        {"Conv1D": {"filters": 2, "kernel_size": 2, "strides": 2, "padding": "same"}},
        {"AveragePooling1D": {"pool_size": 3, "strides": 1, "padding": "same"}},
        {"UpSampling1D": {"size": 2}}, {"GlobalAveragePooling1D": {}}]),
    "bilinear": seq([4, 5, 2], [{"UpSampling2D": {"size": [2, 3], "interpolation": "bilinear"}},
                               {"Resizing": {"height": 5, "width": 4, "interpolation": "nearest"}},
                               {"Softmax": {"axis": 1}}, {"Flatten": {}}]),
    "softmax_axis": seq([3, 4], [{"Dense": {"units": 5, "activation": {"softmax": {"axis": 1}}}},
                                 {"Activation": {"activation": "exponential"}},
                                 {"Dense": {"units": 2, "activation": {"gelu": {"approximate": True}}}},
                                 {"LayerNormalization": {"axis": [1, 2]}}]),
    "dense_attention": {"inputs": {"q": {"shape": [4, 3]}, "v": {"shape": [5, 3]}}, "layers": [
        {"Masking": {"name": "mq", "inputs": "q"}}, {"Masking": {"name": "mv", "inputs": "v"}},
        {"AdditiveAttention": {"name": "add", "use_causal_mask": True, "inputs": ["mq", "mv"]}},
        {"Attention": {"name": "dot", "inputs": ["mq", "mv"]}},
        {"Concatenate": {"name": "cat", "axis": 1, "inputs": ["add", "dot"]}},
        {"LSTM": {"name": "rnn", "units": 2, "inputs": "cat"}}], "outputs": ["rnn"]},
}


@pytest.mark.parametrize("name", sorted(MORE))
def test_more_layers_masks_and_paddings(name):
    model = build(MORE[name])
    randomize(model, seed=3)
    proto = build_proto(model)
    for batch in (1, 7):
        assert_same(model, proto, sample_inputs(model, batch, ids_below=9, pad_from=2))


def test_deep_recurrent_stack_within_1e_4():
    """Seven recurrent layers over 50 steps: float32 rounding (ONNX Runtime's MatMul
    sums in another order, its tanh/sigmoid differ in the last bit) compounds through
    350 dependent steps — about 2.5e-5 here, so 1e-4, not 1e-5."""
    layers = [{"LSTM": {"units": 32, "return_sequences": True}} for _ in range(6)]
    model = build(seq([50, 16], layers + [{"GRU": {"units": 32, "reset_after": False}}]))
    randomize(model, seed=5)
    proto = build_proto(model)
    for batch in (1, 7):
        assert_same(model, proto, sample_inputs(model, batch), tol=1e-4)


def test_recurrent_ops_without_mask_scan_with_one():
    """ONNX's own LSTM/GRU/RNN ops where they hold the layer exactly; a mask, or an
    activation they don't take by name (swish), goes through Scan."""
    ops = [n.op_type for n in build_proto(build(MORE["recurrent_native"])).graph.node]
    assert ops.count("GRU") == 2 and ops.count("LSTM") == 3 and ops.count("RNN") == 1
    assert ops.count("Scan") == 1  # the swish SimpleRNN
    ops = [n.op_type for n in build_proto(build(MORE["recurrent_masked"])).graph.node]
    assert ops.count("Scan") == 5 and not {"LSTM", "GRU", "RNN"} & set(ops)


def test_two_inputs_two_outputs_functional_model(tmp_path):
    """Names in, names out, each output its own, at batch sizes 1 and 7."""
    model = build({"inputs": {"image": {"shape": [6, 6, 1]}, "tabular": {"shape": [3]}},
                   "layers": [
        {"Conv2D": {"name": "conv", "filters": 2, "kernel_size": 3, "inputs": "image"}},
        {"GlobalAveragePooling2D": {"name": "gap", "inputs": "conv"}},
        {"Dense": {"name": "tab", "units": 2, "activation": "relu", "inputs": "tabular"}},
        {"Concatenate": {"name": "both", "inputs": ["gap", "tab"]}},
        {"Dense": {"name": "kind", "units": 3, "activation": "softmax", "inputs": "both"}},
        {"Dense": {"name": "size", "units": 1, "inputs": "both"}}],
        "outputs": ["kind", "size"]})
    randomize(model)
    path = export_model(model, tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["image", "tabular"]
    assert [o.name for o in proto.graph.output] == ["kind", "size"]
    for batch in (1, 7):
        assert_same(model, proto, sample_inputs(model, batch))


def test_file_format_opset_batch_axis_metadata_and_node_names(tmp_path):
    model = build(seq([4], [{"Dense": {"name": "hidden", "units": 3, "activation": "relu"}},
                            {"Dense": {"name": "out", "units": 2}}]))
    path = export_model(model, tmp_path / "m.onnx", {"run_id": "r1", "config_hash": "abc"})
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == OPSET >= 17
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 4
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["run_id"] == "r1" and meta["config_hash"] == "abc"
    assert meta["trainer_version"] and '"hidden"' in meta["layer_names"]
    assert {n.name.split("/")[0] for n in proto.graph.node} >= {"hidden", "out"}
    assert not list(tmp_path.glob(".*.tmp"))


def test_same_padding_is_tensorflows_as_explicit_pads():
    """TensorFlow's 'same': the odd pad after (bottom/right), written as pads; 'same'
    average pooling counts only the cells inside the input."""
    model = build(seq([9, 10, 3], [
        {"Conv2D": {"filters": 2, "kernel_size": 4, "strides": 3, "padding": "same"}},
        {"AveragePooling2D": {"pool_size": 2, "padding": "same"}}]))
    nodes = {n.op_type: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
             for n in build_proto(model).graph.node}
    # rows: out 3, total pad (3-1)·3 + 4 - 9 = 1 → (0, 1); cols: out 4, (4-1)·3 + 4 - 10 = 3
    assert nodes["Conv"]["pads"] == [0, 1, 1, 2] and "auto_pad" not in nodes["Conv"]
    assert nodes["AveragePool"]["pads"] == [0, 0, 1, 0]  # 3×4 → 2×2: one row after
    assert nodes["AveragePool"]["count_include_pad"] == 0


def test_hard_sigmoid_is_keras_2s():
    model = build(seq([3], [{"Dense": {"units": 4, "activation": "hard_sigmoid"}}]))
    proto = build_proto(model)
    node = next(n for n in proto.graph.node if n.op_type == "HardSigmoid")
    attrs = {a.name: a.f for a in node.attribute}
    assert attrs == pytest.approx({"alpha": 0.2, "beta": 0.5})
    x = np.linspace(-4, 4, 24, dtype=np.float32).reshape(8, 3)
    assert_same(model, proto, [x])


# -- the command --------------------------------------------------------------------------

QUICK = """\
data:
  train: {{dataset: iris}}
  preprocess: {preprocess}
model:
  input_shape: [4]
  layers:
    - Dense: {{units: 8, activation: relu}}
    - Dense: {{units: 3, activation: softmax}}
compile: {{loss: sparse_categorical_crossentropy, optimizer: adam}}
fit: {{epochs: 1, batch_size: 32}}
seed: 1
"""


def fit_run(tmp_path, preprocess="{x: [standardize, {clip: {min: -2.0, max: 2.0}}]}"):
    cfg = write_config(tmp_path, QUICK.format(preprocess=preprocess))
    r = CliRunner().invoke(main, ["fit", str(cfg), "--run-dir", str(tmp_path / "run"), "-q"])
    assert r.exit_code == 0, r.output
    return tmp_path / "run"


def run_model(run):
    from trainer.store import checkpoint

    model = api.build(api.load_run_config(run))
    _, arrays = checkpoint.load(run / "checkpoints" / "last.h5", model, with_optimizer=False)
    return model, arrays


def test_export_run_and_with_preprocessing(tmp_path):
    from trainer.data.pipeline import Preprocessor, Split
    from trainer.app.predict import predict

    run = fit_run(tmp_path)
    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(main, ["export", str(run), str(out)])
    assert r.exit_code == 0, r.output
    model, arrays = run_model(run)
    raw = np.random.default_rng(0).normal(5, 2, (7, 4)).astype(np.float32)
    pre = Preprocessor({"x": ["standardize", {"clip": {"min": -2.0, "max": 2.0}}]},
                       model.input_names, [])
    pre.set_state(arrays)
    name = model.input_names[0]
    ready = pre.apply(Split({name: raw}, {})).x[name]
    assert not np.allclose(ready, raw)
    proto = onnx.load(str(out))
    assert_same(model, proto, [ready])
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["run_id"] == "run" and len(meta["config_hash"]) == 64
    r = CliRunner().invoke(main, ["export", str(run), str(out), "--with-preprocessing"])
    assert r.exit_code == 0, r.output
    theirs = onnx_predict(onnx.load(str(out)), model, [raw])[0]
    np.save(tmp_path / "raw.npy", raw)
    ours = predict(run, tmp_path / "raw.npy")[0][0]  # what `trainer predict` gives
    assert np.abs(theirs - ours).max() <= TOL


def test_export_config_untrained(tmp_path):
    cfg = ROOT / "configs" / "quickstart.yaml"
    out = tmp_path / "q.onnx"
    r = CliRunner().invoke(main, ["export", str(cfg), str(out)])
    assert r.exit_code == 0, r.output
    model = api.build(api.load_config(cfg))
    assert_same(model, onnx.load(str(out)), sample_inputs(model, 7))


def test_unexportable_preprocessing_is_refused_by_name(tmp_path):
    run = fit_run(tmp_path, preprocess="{x: [{cast: float32}]}")
    r = CliRunner().invoke(main, ["export", str(run), str(tmp_path / "m.onnx"),
                                  "--with-preprocessing"])
    assert r.exit_code == 2 and "cast" in r.output, r.output
    assert not (tmp_path / "m.onnx").exists()


def test_user_layer_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "mylayers.py").write_text(
        "from trainer.engine.layer import Layer\n"
        "class Twice(Layer):\n"
        "    def forward(self, x, training):\n"
        "        return 2 * x, lambda dy: 2 * dy\n")
    cfg = write_config(tmp_path, """\
data: {train: {dataset: iris}}
model:
  input_shape: [4]
  layers:
    - Dense: {units: 3}
    - {layer: "mylayers:Twice", name: twice}
compile: {loss: mse, optimizer: sgd}
""")
    r = CliRunner().invoke(main, ["export", str(cfg), str(tmp_path / "m.onnx")])
    assert r.exit_code == 2, r.output
    assert "twice" in r.output and "Twice" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "m.onnx").exists() and not list(tmp_path.glob(".*.tmp"))


def test_folder_that_does_not_exist(tmp_path):
    run = fit_run(tmp_path)
    r = CliRunner().invoke(main, ["export", str(run), str(tmp_path / "nope" / "m.onnx")])
    assert r.exit_code == 2 and "does not exist" in r.output, r.output
    assert not (tmp_path / "nope").exists()
    r = CliRunner().invoke(main, ["export", str(tmp_path / "no_run"), str(tmp_path / "m.onnx")])
    assert r.exit_code == 2 and "does not exist" in r.output, r.output
    assert not (tmp_path / "m.onnx").exists()


def test_run_without_a_final_model(tmp_path):
    run = fit_run(tmp_path)
    for name in ("final.h5", "last.h5"):  # a run stopped before its first checkpoint
        (run / "checkpoints" / name).unlink(missing_ok=True)
    r = CliRunner().invoke(main, ["export", str(run), str(tmp_path / "m.onnx")])
    assert r.exit_code == 3 and "last.h5" in r.output, r.output
    assert not (tmp_path / "m.onnx").exists()


def test_full_disk_leaves_nothing_half_written(tmp_path, monkeypatch):
    """ENOSPC on the temporary file's fsync (as tests/test_faults.py simulates it):
    exit 6, the previous file under the final name untouched, no temporary left."""
    run = fit_run(tmp_path)
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous")
    real = os.fsync

    def full(fd):
        if ".m.onnx." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", full)
    r = CliRunner().invoke(main, ["export", str(run), str(out)])
    monkeypatch.undo()
    assert r.exit_code == 6, r.output
    assert "m.onnx" in r.output and "Traceback" not in r.output
    assert out.read_bytes() == b"previous"
    assert not list(tmp_path.glob(".*.tmp"))


def test_extra_not_installed_is_one_message_with_the_pip_command(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("No module named 'onnx'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    r = CliRunner().invoke(main, ["export", str(ROOT / "configs" / "quickstart.yaml"),
                                  str(tmp_path / "m.onnx")])
    monkeypatch.undo()
    assert r.exit_code == 2, r.output
    assert r.output.count("error:") == 1 and "pip install 'trainer[onnx]'" in r.output
    assert not (tmp_path / "m.onnx").exists()


UNKNOWN_LENGTH = {
    "conv_pool_rnn": seq([None, 3], [
        {"Conv1D": {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}},
        {"MaxPooling1D": {"pool_size": 2, "padding": "same"}},
        {"AveragePooling1D": {"pool_size": 3, "strides": 2, "padding": "same"}},
        {"LSTM": {"units": 3, "return_sequences": True}}, {"GlobalAveragePooling1D": {}}]),
    "masked_attention": {"inputs": {"ids": {"shape": [None]}}, "layers": [
        {"Embedding": {"name": "e", "input_dim": 9, "output_dim": 4, "mask_zero": True,
                       "inputs": "ids"}},
        {"MultiHeadAttention": {"name": "m", "num_heads": 2, "key_dim": 2,
                                "use_causal_mask": True, "inputs": "e"}},
        {"GRU": {"name": "g", "units": 3, "inputs": "m"}}], "outputs": ["g"]},
}


@pytest.mark.parametrize("name", sorted(UNKNOWN_LENGTH))
def test_unknown_sequence_lengths_stay_dynamic(name):
    """An unknown length is a symbolic axis: one file serves sequences of any length
    ('same' windows through auto_pad, causal masks through Trilu)."""
    model = build(UNKNOWN_LENGTH[name])
    randomize(model, seed=2)
    proto = build_proto(model)
    assert proto.graph.input[0].type.tensor_type.shape.dim[1].dim_param
    for length in (5, 8):
        rng = np.random.default_rng(length)
        if model._int_inputs:
            x = rng.integers(0, 9, (7, length)).astype(np.int64)
        else:
            x = rng.normal(size=(7, length, 3)).astype(np.float32)
        assert_same(model, proto, [x])
