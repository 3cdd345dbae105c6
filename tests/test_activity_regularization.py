"""Activity regularization as Keras: ``activity_regularizer`` on Dense, convolution,
Embedding and recurrent layers, and the ``ActivityRegularization`` layer — a penalty
on the layer's output added to the loss, divided by the batch size."""

from pathlib import Path

import numpy as np
import pytest

from gradcheck import check_model
from trainer.build.builder import build_model
from trainer.config.loader import from_dict
from trainer.errors import ConfigError


def _model(layers, input_shape, loss="categorical_crossentropy", metrics=()):
    cfg = from_dict({"data": {"train": {"dataset": "iris"}},
                     "model": {"input_shape": input_shape, "layers": layers},
                     "compile": {"loss": loss, "optimizer": {"SGD": {"lr": 0.1}},
                                 "metrics": list(metrics)}}, Path("t.yaml"))
    return build_model(cfg)


def _data(rng, n=6, features=4, classes=3):
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]
    return x, y


def test_the_penalty_joins_the_loss_divided_by_the_batch_size():
    rng = np.random.default_rng(0)
    layers = [{"Dense": {"units": 5, "activation": "tanh",
                         "activity_regularizer": {"l1_l2": {"l1": 0.01, "l2": 0.02}}}},
              {"ActivityRegularization": {"l1": 0.03, "l2": 0.0}},
              {"Dense": {"units": 3, "activation": "softmax"}}]
    model = _model(layers, [4])
    plain = _model([{"Dense": {"units": 5, "activation": "tanh"}},
                    {"Dense": {"units": 3, "activation": "softmax"}}], [4])
    plain.set_weights(model.get_weights())
    x, y = _data(rng)
    h = np.tanh(x @ model.layers[0].params["kernel"] + model.layers[0].params["bias"])
    h = h.astype(np.float64)
    penalty = (0.01 * np.abs(h).sum() + 0.02 * (h * h).sum() + 0.03 * np.abs(h).sum()) / len(x)
    got, _ = model.test_on_batch([x], [y])
    want, _ = plain.test_on_batch([x], [y])
    assert got == pytest.approx(want + penalty, rel=1e-5)
    # predictions are unchanged: the regularization only acts on the loss
    np.testing.assert_array_equal(model.predict_on_batch([x])[0],
                                  plain.predict_on_batch([x])[0])


@pytest.mark.parametrize("layers,shape,loss", [
    ([{"Dense": {"units": 5, "activation": "tanh",
                 "activity_regularizer": {"l1_l2": {"l1": 0.05, "l2": 0.1}}}},
      {"ActivityRegularization": {"l2": 0.2}},
      {"Dense": {"units": 3, "activation": "softmax",
                 "activity_regularizer": {"l2": 0.3}}}], [4], "categorical_crossentropy"),
    ([{"Conv1D": {"filters": 3, "kernel_size": 2, "activation": "tanh",
                  "activity_regularizer": {"l2": 0.1}}},
      {"LSTM": {"units": 4, "activity_regularizer": {"l1": 0.05}}},
      {"Dense": {"units": 3, "activation": "softmax"}}], [5, 4], "categorical_crossentropy"),
])
def test_gradients_with_activity_penalties_match_finite_differences(layers, shape, loss):
    rng = np.random.default_rng(1)
    model = _model(layers, shape, loss)
    x = rng.normal(size=(4, *shape)) * 0.5
    y = np.eye(3)[rng.integers(0, 3, 4)]
    check_model(model, [x], [y])


def test_masked_sequence_model_gradients_match_finite_differences():
    """Masks (loss over unmasked timesteps) and an activity penalty on a recurrent
    layer's sequence output, through the shared model-level check."""
    rng = np.random.default_rng(2)
    layers = [{"Embedding": {"input_dim": 6, "output_dim": 3, "mask_zero": True}},
              {"GRU": {"units": 4, "return_sequences": True,
                       "activity_regularizer": {"l2": 0.1}}},
              {"Dense": {"units": 3, "activation": "softmax"}}]
    model = _model(layers, [5], "sparse_categorical_crossentropy")
    ids = rng.integers(1, 6, (4, 5))
    ids[1, 2:] = 0
    ids[3, 4:] = 0
    labels = rng.integers(0, 3, (4, 5))
    check_model(model, [ids], [labels])


def test_a_wrapped_layer_with_an_activity_regularizer_is_refused():
    with pytest.raises(ConfigError, match="ActivityRegularization layer after"):
        _model([{"TimeDistributed": {"layer": {"Dense": {
            "units": 2, "activity_regularizer": "l2"}}}}, "Flatten",
            {"Dense": {"units": 3, "activation": "softmax"}}], [3, 4])


def test_keras_records_round_trip_the_activity_regularizer(tmp_path):
    from trainer.keras_io.arguments import layer_spec, Problems

    record = {"class_name": "Dense", "config": {
        "name": "d", "units": 3, "activation": "relu",
        "activity_regularizer": {"class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.5}}}}
    ctx = {"problems": Problems()}
    spec = layer_spec(record, ctx)
    assert not ctx["problems"].items
    assert spec == {"Dense": {"name": "d", "units": 3, "activation": "relu",
                              "activity_regularizer": {"L1L2": {"l1": 0.0, "l2": 0.5}}}}
    record = {"class_name": "ActivityRegularization",
              "config": {"name": "a", "l1": 0.1, "l2": 0.0, "trainable": True,
                         "dtype": "float32"}}
    assert layer_spec(record, ctx) == {"ActivityRegularization": {"name": "a", "l1": 0.1,
                                                                  "l2": 0.0}}
    assert not ctx["problems"].items


def test_export_writes_the_activity_regularizer_keras_reads():
    from trainer.keras_io.arguments import Problems, layer_spec
    from trainer.keras_io.export import keras_config

    model = _model([{"Dense": {"units": 5, "activity_regularizer": {
                        "l1_l2": {"l1": 0.01, "l2": 0.02}}}},
                    {"ActivityRegularization": {"l1": 0.03}},
                    {"Dense": {"units": 3, "activation": "softmax"}}], [4])
    records = keras_config(model)["config"]["layers"][1:]
    assert records[0]["config"]["activity_regularizer"] == {
        "class_name": "L1L2", "config": {"l1": 0.01, "l2": 0.02}}
    assert (records[1]["config"]["l1"], records[1]["config"]["l2"]) == (0.03, 0.0)
    ctx = {"problems": Problems()}
    back = [layer_spec(r, ctx) for r in records]
    assert not ctx["problems"].items
    assert back[0]["Dense"]["activity_regularizer"] == {"L1L2": {"l1": 0.01, "l2": 0.02}}
    assert back[1]["ActivityRegularization"]["l1"] == 0.03
