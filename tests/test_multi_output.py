"""Layers with several outputs in functional models: an RNN's ``return_state`` outputs
(``name:k``), recurrent layers taking initial states as extra inputs (Keras's
``initial_state``), their gradients, the seq2seq config, Keras translation, errors."""

import csv
import json
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT, write_config
from gradcheck import _numeric, check_layer
from trainer.app import fit as api
from trainer.cli import main
from trainer.engine.layer import Layer
from trainer.errors import ConfigError
from trainer.keras_io.export import keras_config
from trainer.keras_io.translate import translate_model
from trainer.config.families import layers
from trainer.app.summary import summary_rows

B, T, D, U = 3, 4, 3, 4
BIAS = "{random_normal: {stddev: 0.5}}"


def build(tmp_path, text):
    path = write_config(tmp_path, textwrap.dedent(text))
    return api.build(api.load_config(path))


def seq2seq(kind, states, extra="", dec_extra="", outputs="[out, code]"):
    """Encoder (return_state) → decoder started from its states; a second head on the
    encoder's output 0, so output 0 and the states both send gradients back."""
    refs = ", ".join(f'"encoder:{k}"' for k in range(1, states + 1))
    return f"""\
    seed: 1
    dtype: float64
    data: {{train: {{dataset: seq2seq_tokens, length: 4, vocab_size: 3}}}}
    model:
      inputs: {{enc_in: {{shape: [{T}, {D}]}}, dec_in: {{shape: [{T + 1}, {D}]}}}}
      layers:
        - {kind}: {{name: encoder, units: {U}, return_state: true, inputs: enc_in,
                    bias_initializer: {BIAS}{extra}}}
        - {kind}: {{name: decoder, units: {U}, return_sequences: true,
                    bias_initializer: {BIAS}, inputs: [dec_in, {refs}]{dec_extra}}}
        - TimeDistributed: {{name: out, layer: {{Dense: {{units: 2}}}}}}
        - Dense: {{name: code, units: 2, inputs: encoder}}
      outputs: {outputs}
    compile: {{loss: mse}}
    """


# -- gradients: the whole graph, float64 finite differences ------------------------------
def loss_of(model, xs, ys, training=True):
    preds = model.graph.forward(xs, training=training)
    parts = model._losses(ys, preds, None)
    return parts, sum(o.weight * l for o, (l, _) in zip(model.outputs, parts))


@pytest.mark.parametrize("kind,states,extra", [
    ("LSTM", 2, ""), ("GRU", 1, ""), ("SimpleRNN", 1, ""),
    ("LSTM", 2, ", recurrent_activation: sigmoid, go_backwards: true"),  # the fused path
    ("GRU", 1, ", reset_after: false"),
])
def test_gradients_through_states_and_initial_states(tmp_path, kind, states, extra):
    model = build(tmp_path, seq2seq(kind, states, extra, extra))
    model.graph.input_gradients = True  # the inputs' gradients are checked too
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(B, T, D)), rng.normal(size=(B, T + 1, D))]
    ys = [rng.normal(size=(B, T + 1, 2)), rng.normal(size=(B, 2))]
    parts, _ = loss_of(model, xs, ys)
    dxs = model.graph.backward([g for _, g in parts])
    scalar = lambda: loss_of(model, xs, ys, training=False)[1]  # noqa: E731
    for layer in model.layers:
        for name, p in layer.params.items():
            np.testing.assert_allclose(layer.grads[name], _numeric(scalar, p, 1e-6),
                                       rtol=1e-5, atol=1e-8, err_msg=f"{layer.name}.{name}")
    for x, dx in zip(xs, dxs):
        np.testing.assert_allclose(dx, _numeric(scalar, x, 1e-6), rtol=1e-5, atol=1e-8)


class WithStates(Layer):
    """Test adapter: check_layer on an RNN called on ``[x, *initial_states]`` (optionally
    with a mask), so the gradients of the initial states are checked as inputs."""

    multi_input = True

    def __init__(self, layer, mask=None):
        super().__init__(name="adapter")
        self.layer, self.mask = layer, mask
        self.rng = np.random.default_rng(0)

    def build(self, input_shapes, rng):
        self.layer.dtype = np.float64
        out = self.layer.build(list(input_shapes), rng)
        self.params, self.grads = self.layer.params, self.layer.grads
        return out

    def cast(self, dtype):
        self.layer.cast(dtype)
        self.params, self.grads = self.layer.params, self.layer.grads

    def forward(self, xs, training):
        self.layer.rng = self.rng
        return self.layer.forward(list(xs), training, mask=self.mask)


@pytest.mark.parametrize("kind,args", [
    ("SimpleRNN", {}), ("LSTM", {}), ("LSTM", {"activation": "sigmoid"}),  # NumPy path
    ("GRU", {}), ("GRU", {"reset_after": False}),
    ("LSTM", {"recurrent_dropout": 0.4, "dropout": 0.2, "go_backwards": True}),
])
@pytest.mark.parametrize("masked", [False, True])
def test_layer_gradients_of_initial_states(kind, args, masked):
    rng = np.random.default_rng(1)
    layer = layers.get({kind: {"units": U, "return_sequences": True,
                               "bias_initializer": {"random_normal": {"stddev": 0.5}},
                               **args}})
    mask = None
    if masked:  # pre-padding in row 0: its first steps keep the initial state
        mask = np.ones((B, T), bool)
        mask[0, :2] = False
    xs = [rng.normal(size=(B, T, D))] + [rng.normal(size=(B, U))
                                         for _ in range(layer.n_states)]
    check_layer(WithStates(layer, mask), xs)


def test_initial_states_are_used():
    rng = np.random.default_rng(2)
    lstm = layers.get({"LSTM": {"units": U}})
    lstm.dtype = np.float64
    lstm.build([(T, D), (U,), (U,)], rng)
    x = rng.normal(size=(B, T, D))
    zeros = [np.zeros((B, U))] * 2
    y0, _ = lstm.forward(x, training=False)
    y1, _ = lstm.forward([x] + zeros, training=False)
    y2, _ = lstm.forward([x, rng.normal(size=(B, U)), rng.normal(size=(B, U))], False)
    np.testing.assert_allclose(y0, y1)
    assert not np.allclose(y0, y2)


# -- the graph: tensors, summary ----------------------------------------------------------
def test_graph_gives_a_tensor_per_output_and_references_resolve(tmp_path):
    model = build(tmp_path, seq2seq("LSTM", 2))
    g = model.graph
    encoder, decoder = g.nodes[0], g.nodes[1]
    assert len(encoder.outputs) == 3 and encoder.shapes == [(U,)] * 3
    assert decoder.inputs == [1] + encoder.outputs[1:]
    assert g.nodes[3].inputs == [encoder.outputs[0]]  # `encoder` alone is output 0
    assert [g.producer[t] for t in encoder.outputs] == [encoder] * 3
    assert model.output_names == ["out", "code"]


def test_a_state_can_be_a_model_output(tmp_path):
    text = seq2seq("GRU", 1, outputs='[out, "encoder:1"]')
    model = build(tmp_path, text.replace("- Dense: {name: code, units: 2, inputs: encoder}",
                                         ""))
    assert model.graph.shapes[model.graph.outputs[1]] == (U,)
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(B, T, D)), rng.normal(size=(B, T + 1, D))]
    out, h = model.graph.forward(xs)
    assert out.shape == (B, T + 1, 2) and h.shape == (B, U)


def test_summary_lists_the_output_shapes_and_tensor_indices(tmp_path):
    path = write_config(tmp_path, textwrap.dedent(seq2seq("LSTM", 2)))
    r = CliRunner().invoke(main, ["summary", str(path)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "encoder[0][1]" in r.output and "encoder[0][2]" in r.output
    assert r.output.count("encoder (LSTM)") == 1
    rows = summary_rows(api.build(api.load_config(path)))
    assert rows[2][:2] == ("encoder (LSTM)", "[(None, 4), (None, 4), (None, 4)]")
    assert rows[3][3] == ["dec_in[0][0]", "encoder[0][1]", "encoder[0][2]"]


# -- errors at build time -----------------------------------------------------------------
def test_output_index_beyond_the_layer_outputs(tmp_path):
    text = seq2seq("LSTM", 2).replace('"encoder:2"]', '"encoder:3"]')
    with pytest.raises(ConfigError, match=r"'encoder:3' refers to output 3 of 'encoder', "
                                          r"which has 3 outputs \(encoder:0 .. encoder:2\)"):
        build(tmp_path, text)
    with pytest.raises(ConfigError, match=r"model.outputs\[1\].*'code:1'.*1 output "
                                          r"\(code:0\).*return_state"):
        build(tmp_path, seq2seq("LSTM", 2, outputs='[out, "code:1"]'))


def test_initial_state_count_and_shape(tmp_path):
    with pytest.raises(ConfigError, match=r"model.layers\[1\].*LSTM takes 2 initial "
                                          r"state\(s\) \[h, c\].*got 1"):
        build(tmp_path, seq2seq("LSTM", 1))
    text = seq2seq("GRU", 1).replace("units: 4, return_sequences",
                                    "units: 5, return_sequences")
    with pytest.raises(ConfigError, match=r"initial_state 0: shape \(None, 4\) doesn't fit "
                                          r"the state shape \(None, 5\)"):
        build(tmp_path, text)


def test_multi_output_layer_in_sequential_and_time_distributed(tmp_path):
    text = """\
    data: {train: {dataset: seq2seq_tokens}}
    model:
      input_shape: [4, 3]
      layers: [{LSTM: {units: 2, return_state: true}}]
    compile: {loss: mse}
    """
    with pytest.raises(ConfigError, match="several outputs.*functional"):
        build(tmp_path, text)
    with pytest.raises(ConfigError, match="one input and one output"):
        layers.get({"TimeDistributed": {"layer": {"GRU": {"units": 2, "return_state": True}}}})


# -- training through the CLI -------------------------------------------------------------
def test_seq2seq_config_trains_and_loss_decreases(workdir):
    r = CliRunner().invoke(main, [
        "fit", str(ROOT / "configs" / "seq2seq.yaml"), "--run-dir", str(workdir / "run"),
        "--set", "fit.epochs=3", "--set", "data.train.samples=600",
        "--set", "data.validation.samples=600", "--set", "expect={}"],
        catch_exceptions=False)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(workdir / "run" / "history.csv")))
    losses = [float(row["loss"]) for row in rows]
    assert len(losses) == 3 and losses[-1] < 0.8 * losses[0], losses


def test_dataset_reverses_with_teacher_forcing():
    from trainer.datasets.seq2seq import Seq2SeqTokens
    x, y = Seq2SeqTokens(subset="all", samples=10, length=4, vocab_size=3).load()
    src, dec, tgt = x["enc_in"].argmax(-1), x["dec_in"].argmax(-1), y["out"]
    assert x["enc_in"].shape == (10, 4, 3) and x["dec_in"].shape == (10, 4, 4)
    np.testing.assert_array_equal(tgt, src[:, ::-1])
    assert (dec[:, 0] == 3).all()  # the start token
    np.testing.assert_array_equal(dec[:, 1:], tgt[:, :-1])


# -- Keras interop ------------------------------------------------------------------------
def k2_lstm(name, **extra):
    return {"class_name": "LSTM", "name": name, "config": {
        "name": name, "trainable": True, "dtype": "float32", "units": 4,
        "activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True,
        "return_sequences": False, "return_state": False, "go_backwards": False,
        "stateful": False, "unroll": False, "time_major": False, "implementation": 2,
        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "recurrent_initializer": {"class_name": "Orthogonal",
                                  "config": {"gain": 1.0, "seed": None}},
        "bias_initializer": {"class_name": "Zeros", "config": {}}, "unit_forget_bias": True,
        "kernel_regularizer": None, "recurrent_regularizer": None, "bias_regularizer": None,
        "activity_regularizer": None, "kernel_constraint": None,
        "recurrent_constraint": None, "bias_constraint": None, "dropout": 0.0,
        "recurrent_dropout": 0.0, **extra}}


def keras2_seq2seq():
    """``encoder = LSTM(4, return_state=True)``; ``_, h, c = encoder(enc_in)``;
    ``LSTM(4, return_sequences=True)(dec_in, initial_state=[h, c])`` — Keras 2 lists
    the initial states as inputs of the call after the sequence."""
    inputs = [{"class_name": "InputLayer", "name": n, "inbound_nodes": [],
               "config": {"batch_input_shape": [None, t, 3], "dtype": "float32",
                          "sparse": False, "ragged": False, "name": n}}
              for n, t in (("enc_in", 5), ("dec_in", 6))]
    encoder = {**k2_lstm("encoder", return_state=True),
               "inbound_nodes": [[["enc_in", 0, 0, {}]]]}
    decoder = {**k2_lstm("decoder", return_sequences=True), "inbound_nodes": [[
        ["dec_in", 0, 0, {}], ["encoder", 0, 1, {}], ["encoder", 0, 2, {}]]]}
    return {"class_name": "Functional", "config": {
        "name": "s2s", "layers": [*inputs, encoder, decoder],
        "input_layers": [["enc_in", 0, 0], ["dec_in", 0, 0]],
        "output_layers": [["decoder", 0, 0], ["encoder", 0, 2]]}}


def test_keras_return_state_and_initial_state_translate_and_build(tmp_path):
    model, problems = translate_model(json.loads(json.dumps(keras2_seq2seq())))
    assert not problems.items and not problems.layers
    enc, dec = model["layers"]
    assert enc["LSTM"]["return_state"] is True and enc["LSTM"]["inputs"] == "enc_in"
    assert dec["LSTM"]["inputs"] == ["dec_in", "encoder:1", "encoder:2"]
    assert model["outputs"] == ["decoder", "encoder:2"]
    # Keras 3 passes the states as the initial_state keyword: the same config
    k3 = keras2_seq2seq()
    for rec in k3["config"]["layers"][2:]:
        args = [{"class_name": "__keras_tensor__", "config": {"keras_history": h[:3]}}
                for h in rec["inbound_nodes"][0]]
        kwargs = {"initial_state": args[1:]} if len(args) > 1 else {}
        rec["inbound_nodes"] = [{"args": args[:1], "kwargs": kwargs}]
    assert translate_model(k3)[0] == model
    # it builds, and exports back to the same Keras connections
    data = {"train": {"dataset": "seq2seq_tokens"}}
    path = write_config(tmp_path, json.dumps({"data": data, "model": model,
                                               "compile": {"loss": "mse"}}), "m.json")
    built = api.build(api.load_config(path))
    exported = keras_config(built)["config"]
    by_name = {rec["name"]: rec for rec in exported["layers"]}
    assert by_name["decoder"]["inbound_nodes"] == keras2_seq2seq()["config"]["layers"][3][
        "inbound_nodes"]
    assert exported["output_layers"] == [["decoder", 0, 0], ["encoder", 0, 2]]
