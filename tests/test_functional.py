"""Functional models: graph building, shared layers, gradients through the whole graph,
build-time errors, summary, multi-output logs and run configs that build again."""

import csv
import json
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT, write_config
from gradcheck import _numeric
from trainer.app import fit as api
from trainer.cli import main
from trainer.errors import ConfigError, DataError

DATA = "data:\n  train: {dataset: two_input_synthetic, subset: train, samples: 200}\n"

SHARED = """\
seed: 3
dtype: float64
model:
  inputs: {a: {shape: [3]}, b: {shape: [3]}, t: {shape: [2, 4]}}
  layers:
    - Dense: {name: enc, units: 4, activation: tanh, inputs: a}
    - {call: enc, inputs: b, name: enc_b}
    - Multiply: {name: prod, inputs: [enc, enc_b]}
    - Subtract: {name: diff, inputs: [enc, enc_b]}
    - Dense: {name: seq, units: 4, activation: sigmoid, inputs: t}
    - Flatten
    - Dense: {name: squeeze, units: 4}
    - Concatenate: {name: merged, inputs: [prod, diff, squeeze]}
    - Dense: {name: label, units: 3, activation: softmax}
    - Dot: {name: sim, axes: 1, normalize: true, inputs: [enc_b, squeeze]}
    - Add: {name: value, inputs: [sim, enc_b]}
  outputs: [label, value]
compile:
  loss: {label: categorical_crossentropy, value: mse}
  loss_weights: [1.0, 0.3]
  metrics: {label: [accuracy]}
"""


def build(tmp_path, text, name="config.yaml"):
    path = write_config(tmp_path, textwrap.dedent(text), name)
    return api.build(api.load_config(path))


def shared_batch(rng, n=5):
    xs = [rng.normal(size=(n, 3)), rng.normal(size=(n, 3)), rng.normal(size=(n, 2, 4))]
    label = np.eye(3)[rng.integers(0, 3, n)]
    return xs, [label, rng.normal(size=(n, 4))]


def total_loss(model, xs, ys, training=True):
    preds = model.graph.forward(xs, training=training)
    parts = model._losses(ys, preds, None)
    return preds, parts, sum(o.weight * l for o, (l, _) in zip(model.outputs, parts))


def test_graph_shape_names_and_shared_weights(tmp_path):
    model = build(tmp_path, DATA + SHARED)
    g = model.graph
    assert model.input_names == ["a", "b", "t"] and model.output_names == ["label", "value"]
    assert [g.shapes[i] for i in g.outputs] == [(3,), (4,)]
    names = [layer.name for layer in model.layers]
    assert names.count("enc") == 1 and len(g.nodes) == len(names) + 1
    enc_nodes = [n for n in g.nodes if n.layer.name == "enc"]
    assert [n.inputs for n in enc_nodes] == [[0], [1]]
    assert model.layers[0].params["kernel"].dtype == np.float64


def check_graph_gradients(model, xs, ys):
    """Finite differences of the weighted total loss through the whole graph (float64):
    every weight (a shared layer's gradient sums all its calls) and every input."""
    model.graph.input_gradients = True
    _, parts, _ = total_loss(model, xs, ys)
    dxs = model.graph.backward([g for _, g in parts])
    scalar = lambda: total_loss(model, xs, ys, training=False)[2]  # noqa: E731
    for layer in model.layers:
        for name, p in layer.params.items():
            np.testing.assert_allclose(layer.grads[name], _numeric(scalar, p, 1e-6),
                                       rtol=1e-5, atol=1e-8,
                                       err_msg=f"{layer.name}.{name}")
    for x, dx in zip(xs, dxs):
        np.testing.assert_allclose(dx, _numeric(scalar, x, 1e-6), rtol=1e-5, atol=1e-8)


def test_gradients_through_merges_and_shared_layer(tmp_path):
    model = build(tmp_path, DATA + SHARED)
    xs, ys = shared_batch(np.random.default_rng(0))
    check_graph_gradients(model, xs, ys)


def test_layer_called_on_its_own_output(tmp_path):
    """A chain `- {call: d}` applies d twice; `d[1]` names its second call."""
    model = build(tmp_path, DATA + """\
dtype: float64
model:
  inputs: {x: {shape: [3]}}
  layers:
    - Dense: {name: d, units: 3, activation: tanh}
    - {call: d}
    - Add: {name: s, inputs: [d, "d[1]"]}
  outputs: [s]
compile:
  loss: mse
""")
    assert len(model.layers) == 2 and len(model.graph.nodes) == 3
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 3))
    d = model.layers[0]
    h1 = np.tanh(x @ d.params["kernel"] + d.params["bias"])
    h2 = np.tanh(h1 @ d.params["kernel"] + d.params["bias"])
    np.testing.assert_allclose(model.predict_on_batch([x])[0], h1 + h2)
    check_graph_gradients(model, [x], [rng.normal(size=(4, 3))])


def test_shared_gradients_are_zeroed_once_per_step(tmp_path):
    model = build(tmp_path, DATA + SHARED)
    xs, ys = shared_batch(np.random.default_rng(1))
    grads = []
    for _ in range(2):  # two steps on the same batch: the same gradients, not doubled
        _, parts, _ = total_loss(model, xs, ys)
        model.graph.backward([g for _, g in parts])
        grads.append(model.layers[0].grads["kernel"].copy())
    np.testing.assert_array_equal(grads[0], grads[1])
    assert np.abs(grads[0]).sum() > 0


SEQUENTIAL = """\
seed: 11
data:
  train: {dataset: iris}
model:
  input_shape: [4]
  layers:
    - Dense: {units: 8, activation: relu}
    - Dropout: {rate: 0.3}
    - Dense: {units: 3, activation: softmax}
compile:
  loss: sparse_categorical_crossentropy
  optimizer: {Adam: {lr: 0.01}}
  metrics: [accuracy]
"""

def test_sequential_written_as_graph_gives_identical_results(tmp_path):
    graph_text = SEQUENTIAL.replace("  input_shape: [4]\n", "  inputs: {x: {shape: [4]}}\n")
    graph_text = graph_text.replace("compile:", "  outputs: [dense_1]\ncompile:")
    seq = build(tmp_path, SEQUENTIAL, "seq.yaml")
    fun = build(tmp_path, graph_text, "fun.yaml")
    assert [l.name for l in seq.layers] == [l.name for l in fun.layers]
    for a, b in zip(seq.layers, fun.layers):  # same seed and init order → same weights
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(wa, wb)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    np.testing.assert_array_equal(seq.predict_on_batch([x])[0], fun.predict_on_batch([x])[0])
    assert seq.train_on_batch([x], [y]) == fun.train_on_batch([x], [y])  # dropout included
    for a, b in zip(seq.layers, fun.layers):
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(seq.predict_on_batch([x])[0], fun.predict_on_batch([x])[0])


# -- build-time errors: each names the layer and the config file:line ------------

BASE = DATA + """\
model:
  inputs: {image: {shape: [8, 8]}, meta: {shape: [6]}}
  layers:
    - Flatten: {inputs: image}
    - Dense: {name: feat, units: 5}
    - Concatenate: {name: merged, inputs: [feat, meta]}
    - Dense: {name: label, units: 4, activation: softmax}
  outputs: [label]
compile:
  loss: {label: categorical_crossentropy}
"""


def build_error(tmp_path, old, new, count=1):
    text = BASE.replace(old, new, count)
    assert text != BASE
    with pytest.raises(ConfigError) as info:
        build(tmp_path, text)
    return str(info.value)


def test_base_config_builds(tmp_path):
    model = build(tmp_path, BASE)
    assert model.output_names == ["label"] and model.graph.shapes[-1] == (4,)


def test_cycle_names_the_layers(tmp_path):
    msg = build_error(tmp_path, "Dense: {name: feat, units: 5}",
                      "Dense: {name: feat, units: 5, inputs: label}")
    assert "cycle" in msg and "feat → merged → label → feat" in msg
    assert "config.yaml:" in msg


def test_unknown_input_suggests(tmp_path):
    msg = build_error(tmp_path, "inputs: [feat, meta]", "inputs: [feat, mta]")
    assert "model.layers[2]: unknown input 'mta' of layer 'merged'. Did you mean 'meta'?" in msg
    assert "(config.yaml:8:50)" in msg


def test_unused_input(tmp_path):
    msg = build_error(tmp_path, "inputs: [feat, meta]", "inputs: [feat, feat]")
    assert "model.inputs.meta: input 'meta' is not used by any output" in msg
    assert "config.yaml:4:" in msg


@pytest.mark.parametrize("old, new, clash", [
    ("{name: feat, units: 5}", "{name: merged, units: 5}", "merged"),
    ("{name: feat, units: 5}", "{name: meta, units: 5}", "meta"),
])
def test_duplicate_names(tmp_path, old, new, clash):
    msg = build_error(tmp_path, old, new)
    assert f"duplicate layer name '{clash}'" in msg and "config.yaml:" in msg


def test_unknown_output_and_output_that_is_an_input(tmp_path):
    msg = build_error(tmp_path, "outputs: [label]", "outputs: [labl]")
    assert "model.outputs[0]: unknown output 'labl'. Did you mean 'label'?" in msg
    assert "config.yaml:10:" in msg
    msg = build_error(tmp_path, "outputs: [label]", "outputs: [label, meta]")
    assert "'meta' is a model input" in msg
    msg = build_error(tmp_path, "outputs: [label]", "outputs: [label, label]")
    assert "listed twice" in msg


def test_layer_that_leads_to_no_output(tmp_path):
    msg = build_error(tmp_path, "  outputs:", "    - Dense: {name: extra, units: 2}\n  outputs:")
    assert "model.layers[4]: layer 'extra' does not lead to any output" in msg


def test_shapes_that_do_not_fit(tmp_path):
    msg = build_error(tmp_path, "meta: {shape: [6]}", "meta: {shape: [6, 2]}")
    assert msg.startswith("model.layers[2]: layer 'merged' (Concatenate):")
    assert "(None, 5)" in msg and "(None, 6, 2)" in msg and "config.yaml:8:7" in msg
    msg = build_error(tmp_path, "Concatenate: {name: merged, inputs: [feat, meta]}",
                      "Add: {name: merged, inputs: [feat, meta]}")
    assert "(None, 5)" in msg and "(None, 6)" in msg and "inputs: feat (None, 5), meta" in msg


def test_single_input_layer_given_two(tmp_path):
    msg = build_error(tmp_path, "{name: label, units: 4, activation: softmax}",
                      "{name: label, units: 4, activation: softmax, inputs: [merged, meta]}")
    assert "model.layers[3]: layer 'label' (Dense): takes one input, got 2" in msg


def test_shared_layer_errors(tmp_path):
    msg = build_error(tmp_path, "  outputs:", "    - {call: fet, inputs: meta}\n  outputs:")
    assert "no layer 'fet' written before this entry" in msg and "Did you mean 'feat'?" in msg
    msg = build_error(tmp_path, "    - Concatenate: {name: merged, inputs: [feat, meta]}",
                      "    - {call: feat, inputs: meta, name: again}\n"
                      "    - Concatenate: {name: merged, inputs: [feat, again]}")
    assert "model.layers[2]: layer 'feat' (Dense): shared layer called on shape (6,), but " \
           "it was built for (64,)" in msg and "config.yaml:8:7" in msg


def test_first_layer_needs_inputs_when_several(tmp_path):
    msg = build_error(tmp_path, "- Flatten: {inputs: image}", "- Flatten")
    assert "model.layers[0]: the first layer needs `inputs`" in msg and "image, meta" in msg


def test_sequential_placement_in_graph(tmp_path):
    msg = build_error(tmp_path, "{name: feat, units: 5}", "{name: feat, units: 5, input_dim: 4}")
    assert "`input_dim` is for Sequential models" in msg
    msg = build_error(tmp_path, "- Flatten: {inputs: image}", "- Input: {shape: [3]}")
    assert "not as Input layers" in msg


def test_compile_keys_must_be_outputs(tmp_path):
    msg = build_error(tmp_path, "loss: {label: categorical_crossentropy}",
                      "loss: {label: categorical_crossentropy}\n  metrics: {lable: [acc]}")
    assert "compile.metrics: unknown output 'lable'. Did you mean 'label'?" in msg


def test_errors_come_before_any_data_is_read(tmp_path):
    text = BASE.replace("dataset: two_input_synthetic, subset: train, samples: 200",
                        "path: missing.npz, x: {image: a, meta: b}, y: {label: c}")
    text = text.replace("inputs: [feat, meta]", "inputs: [feat, mta]")
    path = write_config(tmp_path, text)
    for command in ("validate", "fit"):
        r = CliRunner().invoke(main, [command, str(path)])
        assert r.exit_code == 2, r.output
        assert "unknown input 'mta'" in r.output and "Traceback" not in r.output


# -- summary ------------------------------------------------------------------

def test_summary_shows_connections_and_shared_layers_once(tmp_path):
    path = write_config(tmp_path, DATA + SHARED)
    r = CliRunner().invoke(main, ["summary", str(path)], catch_exceptions=False)
    out = r.output
    assert r.exit_code == 0 and "Connected to" in out
    assert out.count("enc (Dense)") == 1
    lines = out.splitlines()
    row = next(i for i, line in enumerate(lines) if "enc (Dense)" in line)
    assert "a[0][0]" in lines[row] and "b[0][0]" in lines[row + 1]
    row = next(i for i, line in enumerate(lines) if "prod (Multiply)" in line)
    assert "enc[0][0]" in lines[row] and "enc[1][0]" in lines[row + 1]
    row = next(i for i, line in enumerate(lines) if "sim (Dot)" in line)
    assert "enc[1][0]" in lines[row] and "squeeze[0][0]" in lines[row + 1]
    assert "Total params: 111" in out  # enc 16 (once), seq 20, squeeze 36, label 39


def test_summary_of_sequential_has_no_connections():
    r = CliRunner().invoke(main, ["summary", str(ROOT / "configs" / "quickstart.yaml")])
    assert r.exit_code == 0 and "Connected to" not in r.output


# -- fit: data mapped by name, Keras log names, the run's config builds again -----

FIT = """\
name: mm
data:
  train: {dataset: two_input_synthetic, subset: train, samples: 300}
  validation: {split: 0.2}
  preprocess:
    y: {label: [{to_categorical: {num_classes: 4}}]}
model:
  inputs: {image: {shape: [8, 8]}, meta: {shape: [6]}}
  layers:
    - Flatten: {inputs: image}
    - Dense: {name: enc, units: 6, activation: relu}
    - Concatenate: {name: merged, inputs: [enc, meta]}
    - Dense: {name: label, units: 4, activation: softmax}
    - Dense: {name: value, units: 1, inputs: merged}
    - {call: value, inputs: merged, name: value_again}
    - Average: {name: value_mean, inputs: [value, value_again]}
  outputs: [label, value_mean]
compile:
  loss: {label: categorical_crossentropy, value_mean: mse}
  loss_weights: {value_mean: 0.5}
  optimizer: {Adam: {lr: 0.01}}
  metrics: {label: [accuracy], value_mean: [mse]}
fit: {epochs: 2, batch_size: 32, verbose: 0}
"""


def test_fit_logs_keras_names_and_run_config_builds_again(workdir):
    text = FIT.replace("value_mean", "value_out")
    # the generated dataset names its outputs label/value: map them in a file instead
    from trainer.datasets.multimodal import TwoInputSynthetic
    x, y = TwoInputSynthetic(samples=300).load()
    np.savez(workdir / "mm.npz", img=x["image"], meta=x["meta"], lab=y["label"],
             val=y["value"])
    text = text.replace("{dataset: two_input_synthetic, subset: train, samples: 300}",
                        f"{{path: {workdir / 'mm.npz'}, x: {{image: img, meta: meta}}, "
                        "y: {label: lab, value_out: val}}")  # absolute: the run reads it
    path = write_config(workdir, text)
    r = CliRunner().invoke(main, ["fit", str(path), "--run-dir", str(workdir / "run")],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(workdir / "run" / "history.csv")))
    expected = {"loss", "label_loss", "value_out_loss", "label_accuracy", "value_out_mse"}
    assert expected | {f"val_{k}" for k in expected} | {"epoch", "lr"} == set(rows[0])
    last = {k: float(v) for k, v in rows[-1].items()}
    assert last["loss"] == pytest.approx(last["label_loss"] + 0.5 * last["value_out_loss"],
                                         rel=1e-5)
    assert last["value_out_mse"] == pytest.approx(last["value_out_loss"], rel=1e-5)
    # the resolved config keeps names, inputs and the call entry, and builds the same model
    cfg = api.load_config(workdir / "run" / "config.yaml")
    layers = cfg["model"]["layers"]
    assert layers[5] == {"call": "value", "inputs": "merged", "name": "value_again"}
    assert layers[2]["Concatenate"]["inputs"] == ["enc", "meta"]
    again = api.build(cfg)
    original = api.build(api.load_config(path))
    assert [l.name for l in again.layers] == [l.name for l in original.layers]
    assert again.output_names == ["label", "value_out"]
    for a, b in zip(again.layers, original.layers):
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(wa, wb)
    r = CliRunner().invoke(main, ["evaluate", str(workdir / "run"), "--json"])
    assert r.exit_code == 0, r.output
    assert set(json.loads(r.stdout)) == {"loss", "label_loss", "value_out_loss",
                                         "label_accuracy", "value_out_mse"}


def test_data_names_must_match_the_model(workdir):
    from trainer.datasets.multimodal import TwoInputSynthetic
    x, y = TwoInputSynthetic(samples=50).load()
    np.savez(workdir / "mm.npz", img=x["image"], meta=x["meta"], lab=y["label"])
    text = FIT.replace("{dataset: two_input_synthetic, subset: train, samples: 300}",
                       "{path: mm.npz, x: {image: img, meta: meta}, y: {label: lab}}")
    with pytest.raises(DataError, match="do not match the model's outputs"):
        api.fit(api.load_config(write_config(workdir, text)), run_dir=workdir / "r", verbose=0)


def test_two_input_dataset():
    from trainer.datasets.multimodal import TwoInputSynthetic
    x, y = TwoInputSynthetic(subset="train").load()
    xt, yt = TwoInputSynthetic(subset="test").load()
    assert x["image"].shape == (2000, 8, 8) and x["meta"].shape == (2000, 6)
    assert y["label"].shape == (2000,) and y["value"].shape == (2000, 1)
    assert len(xt["image"]) == 500 and set(np.unique(y["label"])) == {0, 1, 2, 3}
    again, _ = TwoInputSynthetic(subset="train").load()
    np.testing.assert_array_equal(again["image"], x["image"])
