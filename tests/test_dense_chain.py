"""Chains of Dense (+ Dropout at inference, Activation) layers run as one step where no
backward runs (trainer/engine/fusion.py, trainer/engine/kernels/dense_chain.py): the
same predictions as the layers run one by one, within float32 rounding (the rows are
cut into other GEMMs: rtol 1e-5, atol 1e-6), the same bits on 1 and 2 threads, and
training exactly as before."""

import numpy as np
import pytest

from conftest import write_config
from trainer.app import fit as api
from trainer.engine import fusion
from trainer.engine.kernels import dense_chain, parallel

SEQUENTIAL = """\
seed: 3
data: {{train: {{dataset: iris}}}}
model:
  input_shape: [{features}]
  layers:
    - Dense: {{units: 37, activation: relu}}
    - Dropout: {{rate: 0.2}}
    - Dense: {{units: 29, activation: tanh, use_bias: false}}
    - Dropout: {{rate: 0.5}}
    - Dense: {{units: 19}}
    - Activation: {{activation: relu}}
    - Dense: {{units: 5, activation: softmax}}
compile: {{loss: categorical_crossentropy, optimizer: adam}}
"""

FUNCTIONAL = """\
seed: 4
data: {train: {dataset: iris}}
model:
  inputs: {x: {shape: [13]}}
  layers:
    - Dense: {name: trunk, units: 33, activation: relu, inputs: x}
    - Dropout: {name: drop, rate: 0.3}
    - Dense: {name: hidden, units: 21, activation: sigmoid}
    - Dense: {name: side, units: 3, activation: softmax, inputs: drop}
    - Dense: {name: head, units: 7, activation: elu, inputs: hidden}
    - Dense: {name: out, units: 4, activation: softmax}
  outputs: [side, out, hidden]
compile: {loss: categorical_crossentropy, optimizer: adam}
"""


def _build(tmp_path, text):
    tmp_path.mkdir(exist_ok=True)
    model = api.build(api.load_config(write_config(tmp_path, text)))
    rng = np.random.default_rng(7)
    for layer in model.layers:  # biases away from 0
        if "bias" in layer.params:
            layer.params["bias"][...] = rng.normal(0, 0.3, layer.params["bias"].shape)
    return model


def _chains(model, training):
    needed, _ = model.graph._needed_nodes()
    groups, members = fusion.plan(model.graph, training, needed)
    name = lambda k: model.graph.nodes[k].layer.name  # noqa: E731
    return sorted(name(k) for k in groups), sorted(name(k) for k in members)


def _unfused(m):
    m.setattr(fusion, "_dense_chain", lambda *args: None)


def _x(n, features, seed=0):
    return np.random.default_rng(seed).normal(size=(n, features)).astype(np.float32)


def _reference(model, x):
    """The sequential model by hand in float64: x @ W + b, activation, ..."""
    acts = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
            "linear": lambda z: z, "softmax": lambda z: np.exp(z - z.max(1, keepdims=True))
            / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)}
    h = x.astype(np.float64)
    for layer in model.layers:
        if "kernel" in layer.params:
            h = h @ layer.params["kernel"].astype(np.float64)
            if "bias" in layer.params:
                h = h + layer.params["bias"]
        if hasattr(layer, "activation"):
            h = acts[layer.activation.registered_name](h)
    return h


def test_inference_chains_the_dense_layers_and_training_does_not(tmp_path):
    model = _build(tmp_path, SEQUENTIAL.format(features=11))
    heads, members = _chains(model, training=False)
    assert heads == ["dense"]
    assert members == ["activation", "dense_1", "dense_2", "dense_3", "dropout",
                       "dropout_1"]
    assert _chains(model, training=True) == ([], [])


def test_a_chain_stops_at_a_tensor_read_twice_and_at_graph_outputs(tmp_path):
    model = _build(tmp_path, FUNCTIONAL)
    # trunk → drop is read by hidden and side; hidden is a graph output: chains end
    # there (a lone Dense, side, runs as it is)
    assert _chains(model, training=False) == (["head", "trunk"], ["drop", "out"])


@pytest.mark.parametrize("n", [1, 7, 1024, 1500])
def test_sequential_predictions_match_the_layers_one_by_one(tmp_path, monkeypatch, n):
    model = _build(tmp_path, SEQUENTIAL.format(features=11))
    x = _x(n, 11)
    chained = model.predict_on_batch([x])[0]
    whole = model.graph.forward([x])[0]  # the whole batch in one call (blocks, parts)
    with monkeypatch.context() as m:
        _unfused(m)
        one_by_one = model.predict_on_batch([x])[0]
    assert chained.dtype == one_by_one.dtype == np.float32 and chained.shape == (n, 5)
    np.testing.assert_allclose(chained, one_by_one, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(whole, one_by_one, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(chained, _reference(model, x), rtol=1e-4, atol=1e-6)


def test_functional_predictions_match_the_layers_one_by_one(tmp_path, monkeypatch):
    model = _build(tmp_path, FUNCTIONAL)
    x = _x(300, 13)
    chained = model.predict_on_batch([x])
    with monkeypatch.context() as m:
        _unfused(m)
        one_by_one = model.predict_on_batch([x])
    for a, b in zip(chained, one_by_one, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_chained_numbers_do_not_depend_on_the_thread_count(tmp_path):
    model = _build(tmp_path, SEQUENTIAL.format(features=64))
    x = _x(1500, 64)  # several parts and blocks
    try:
        parallel.set_num_threads(1)
        one = (model.predict_on_batch([x])[0], model.graph.forward([x])[0])
        parallel.set_num_threads(2)
        two = (model.predict_on_batch([x])[0], model.graph.forward([x])[0])
    finally:
        parallel.set_num_threads(parallel.num_threads())
    assert np.array_equal(one[0], two[0]) and np.array_equal(one[1], two[1])


def test_blocks_are_fixed_by_the_rows(monkeypatch):
    rng = np.random.default_rng(0)
    steps = [dense_chain.Dense(rng.normal(size=(6, 4)).astype(np.float32), None, True, None)]
    seen = []
    monkeypatch.setattr(dense_chain, "BLOCK_ROWS", 100)
    monkeypatch.setattr(dense_chain, "MIN_ROWS", 100)
    steps.append(lambda h: seen.append(len(h)) or h)
    x = rng.normal(size=(1001, 6)).astype(np.float32)
    y = dense_chain.run(x, steps)
    np.testing.assert_allclose(y, np.maximum(x @ steps[0].kernel, 0), rtol=1e-6, atol=1e-6)
    parts = [b - a for a, b in parallel.ranges(1001, 100)]
    expected = [len(r) for p in parts
                for r in np.array_split(np.empty(p), -(-p // 100))]
    assert sorted(seen) == sorted(expected) and max(seen) <= 100


def test_time_distributed_and_empty_batches(tmp_path, monkeypatch):
    # bug: the chain flattened the leading axes, so a softmax over the time axis ran
    # over the rows of the block instead
    text = SEQUENTIAL.format(features=11).replace("input_shape: [11]",
                                                  "input_shape: [4, 11]")
    text = text.replace("units: 29, activation: tanh", "units: 29, activation: "
                        "{softmax: {axis: 1}}")
    model = _build(tmp_path, text)
    for n in (0, 3, 700):
        x = np.random.default_rng(n).normal(size=(n, 4, 11)).astype(np.float32)
        chained = model.predict_on_batch([x])[0]
        with monkeypatch.context() as m:
            _unfused(m)
            one_by_one = model.predict_on_batch([x])[0]
        assert chained.shape == one_by_one.shape == (n, 4, 5)
        np.testing.assert_allclose(chained, one_by_one, rtol=1e-5, atol=1e-6)


def test_training_steps_are_unchanged(tmp_path, monkeypatch):
    def step(patch):
        model = _build(tmp_path, SEQUENTIAL.format(features=11))
        x, y = _x(64, 11), np.eye(5, dtype=np.float32)[np.arange(64) % 5]
        with monkeypatch.context() as m:
            if patch:
                _unfused(m)
            loss = model.train_on_batch([x], [y])[0]
            val = model.test_on_batch([x], [y])[0]
        return loss, val, [w.copy() for layer in model.layers for w in layer.params.values()]

    fused_run, plain_run = step(False), step(True)
    assert fused_run[0] == plain_run[0]  # the training step: the same bits
    assert all(np.array_equal(a, b) for a, b in zip(fused_run[2], plain_run[2]))
    assert fused_run[1] == pytest.approx(plain_run[1], rel=1e-5)  # evaluation: chained


def test_a_frozen_dense_chains_in_training_until_a_dropout(tmp_path):
    text = SEQUENTIAL.format(features=11).replace(
        "units: 37, activation: relu}", "units: 37, activation: relu, trainable: false}")
    text = text.replace("- Dropout: {rate: 0.2}", "- Dense: {units: 23, trainable: false}\n"
                        "    - Dropout: {rate: 0.2}")
    model = _build(tmp_path, text)
    # training: the frozen Dense layers run as one chain, which stops before the
    # Dropout (it drops while training)
    assert _chains(model, training=True) == (["dense"], ["dense_1"])


def test_a_lone_dense_takes_an_empty_batch_of_sequences(tmp_path):
    # bug: (0, T, features) inputs failed with "cannot reshape array of size 0 into
    # shape (0,4,newaxis)" in Dense's forward
    text = SEQUENTIAL.format(features=11).replace("input_shape: [11]", "input_shape: [4, 11]")
    model = _build(tmp_path, text)
    y, _ = model.layers[0].forward(np.zeros((0, 4, 11), np.float32), False)
    assert y.shape == (0, 4, 37)


PREDICT_RUN = """\
seed: 2
data:
  train: {dataset: iris}
  preprocess:
    y: [{to_categorical: {num_classes: 3}}]
model:
  input_shape: [4]
  layers:
    - Dense: {units: 24, activation: relu}
    - Dropout: {rate: 0.2}
    - Dense: {units: 17, activation: relu}
    - Dropout: {rate: 0.2}
    - Dense: {units: 3, activation: softmax}
compile: {loss: categorical_crossentropy, optimizer: adam}
fit: {epochs: 1, batch_size: 32}
"""


@pytest.fixture(scope="module")
def predict_run(tmp_path_factory):
    from click.testing import CliRunner

    from trainer.cli import main

    folder = tmp_path_factory.mktemp("chain")
    r = CliRunner().invoke(main, ["fit", str(write_config(folder, PREDICT_RUN)), "-q",
                                  "--run-dir", str(folder / "run")])
    assert r.exit_code == 0, r.output
    return folder / "run"


def test_trainer_predict_matches_the_layers_one_by_one(predict_run, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from trainer.app import evaluate
    from trainer.cli import main

    x = np.random.default_rng(5).normal(size=(301, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    before = (tmp_path / "x.npy").read_bytes()
    for extra in ([], ["--batch-size", "128"]):
        r = CliRunner().invoke(main, ["predict", str(predict_run), "--input",
                                      str(tmp_path / "x.npy"), "--output",
                                      str(tmp_path / "p.npy"), *extra])
        assert r.exit_code == 0, r.output
        p = np.load(tmp_path / "p.npy")
        cfg, ckpt = evaluate.final_checkpoint(str(predict_run), None, command="predict")
        model, _ = evaluate.model_of(cfg, ckpt, "predict")
        with monkeypatch.context() as m:
            _unfused(m)
            expected = model.predict_on_batch([x])[0]
        assert p.shape == (301, 3)
        np.testing.assert_allclose(p, expected, rtol=1e-5, atol=1e-6)
    assert (tmp_path / "x.npy").read_bytes() == before  # mapped copy-on-write


def test_predict_maps_a_npy_input_and_names_a_truncated_one(tmp_path):
    from trainer.app.predict import read_inputs
    from trainer.errors import DataError

    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    np.save(tmp_path / "x.npy", x)
    got = read_inputs(tmp_path / "x.npy", ["x"])["x"]
    assert np.array_equal(got, x) and type(got) is np.ndarray
    assert isinstance(got.base, np.memmap) or isinstance(getattr(got.base, "base", None),
                                                         np.memmap)
    (tmp_path / "cut.npy").write_bytes((tmp_path / "x.npy").read_bytes()[:-7])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_inputs(tmp_path / "cut.npy", ["x"])


@pytest.mark.parametrize("units,dtype", [(10, np.float32), (40, np.float32),
                                         (3, np.float64)])
def test_the_softmax_step_matches_numpys_lines(units, dtype):
    from trainer import activations

    rng = np.random.default_rng(units)
    x = rng.normal(size=(7000, 33)).astype(dtype)  # big enough for the compiled pass
    x[5, 3] = np.nan
    W = rng.normal(size=(33, units)).astype(dtype)
    b = rng.normal(size=units).astype(dtype)
    softmax = activations.get("softmax")
    step = dense_chain.Dense(W, b, False, softmax)
    y = step(x)
    expected = softmax.forward(x @ W + b)
    assert step.softmax and dense_chain._softmax(x, W, b) is not None  # the compiled pass
    assert y.dtype == dtype and y.flags.c_contiguous
    assert np.isnan(y[5]).all() and np.isnan(expected[5]).all()
    np.testing.assert_allclose(y, expected, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-7 if dtype == np.float32 else 1e-15)
    assert np.array_equal(dense_chain.Dense(W, None, False, softmax)(x[:6000]),
                          dense_chain.Dense(W, np.zeros_like(b), False, softmax)(x[:6000]),
                          equal_nan=True)


def test_a_replaced_forward_keeps_its_layer_out_of_chains(tmp_path, monkeypatch):
    # a forward replaced on the class (tests/test_faults.py's simulated MemoryError)
    # or on one layer must still run at inference
    from trainer.layers.core import Dense

    model = _build(tmp_path, SEQUENTIAL.format(features=11))
    called = []
    real = Dense.forward
    with monkeypatch.context() as m:
        m.setattr(Dense, "forward", lambda self, x, t: called.append(1) or real(self, x, t))
        assert _chains(model, training=False) == ([], [])
        model.predict_on_batch([_x(3, 11)])
    assert len(called) == 4
    layer = model.layers[2]
    layer.forward = lambda x, t: called.append(2) or real(layer, x, t)
    # dense → dropout, then dense_1 runs its own forward, then dense_2 → ... → dense_3
    assert _chains(model, training=False) == (["dense", "dense_2"],
                                              ["activation", "dense_3", "dropout"])
    model.predict_on_batch([_x(3, 11)])
    assert called[-1] == 2


def test_a_predict_slice_runs_as_one_block(tmp_path, monkeypatch):
    # bug: each of predict_on_batch's 512-row slices of a 1024-row batch ran as two
    # 256-row blocks (two packings of every kernel, and too small for the softmax pass)
    model = _build(tmp_path, SEQUENTIAL.format(features=11))
    seen = []
    real = dense_chain.Dense.__call__
    monkeypatch.setattr(dense_chain.Dense, "__call__",
                        lambda self, x: seen.append(len(x)) or real(self, x))
    model.predict_on_batch([_x(1024, 11)])
    assert seen == [512] * 8


def test_predict_checks_float32_inputs_batch_by_batch(predict_run, tmp_path):
    from trainer.app.predict import predict
    from trainer.errors import DataError

    x = np.random.default_rng(6).normal(size=(3000, 4)).astype(np.float32)
    x[2500:2502, 1] = np.inf  # in the last batch: found, named by its row in the input
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(DataError, match=r"holds 2 NaN/Inf values \(first in row 2500\)"):
        predict(str(predict_run), tmp_path / "x.npy", tmp_path / "p.npy", batch_size=1000)
    assert not (tmp_path / "p.npy").exists()
    x[2500:2502, 1] = 3e38  # finite, though a batch's sum overflows: predicted
    x[:, 0] = 3e38
    np.save(tmp_path / "x.npy", x)
    outputs, _ = predict(str(predict_run), tmp_path / "x.npy", batch_size=1000)
    assert outputs[0].shape == (3000, 3)
