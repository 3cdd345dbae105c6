import numpy as np
import pytest

from gradcheck import check_layer
from trainer.errors import ConfigError
from trainer.config.families import layers
from trainer.config.registry import config_of

B, T, D = 2, 4, 3


def bidi(inner, **args):
    return layers.get({"Bidirectional": dict({"layer": inner}, **args)})


@pytest.mark.parametrize("merge", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("inner", [{"LSTM": {"units": 3}},
                                   {"GRU": {"units": 3, "return_sequences": True}}])
def test_bidirectional_gradients(rng, merge, inner):
    check_layer(bidi(inner, merge_mode=merge), rng.normal(size=(B, T, D)))


def test_bidirectional_gradients_with_dropout(rng):
    inner = {"SimpleRNN": {"units": 3, "return_sequences": True, "dropout": 0.3,
                           "recurrent_dropout": 0.3}}
    check_layer(bidi(inner), rng.normal(size=(B, T, D)))


def test_bidirectional_is_forward_and_reversed_backward(rng):
    layer = bidi({"LSTM": {"units": 3, "return_sequences": True}})
    x = rng.normal(size=(B, T, D))
    y = check_layer(layer, x)
    fwd, back = layer.forward_layer, layer.backward_
    assert not fwd.go_backwards and back.go_backwards
    yf, _ = fwd.forward(x, False)
    yb, _ = back.forward(x, False)
    np.testing.assert_allclose(y, np.concatenate([yf, yb[:, ::-1]], axis=-1))
    assert list(layer.params) == [f"{d}_lstm/{w}" for d in ("forward", "backward")
                                  for w in ("kernel", "recurrent_kernel", "bias")]
    assert layer.params["forward_lstm/kernel"] is fwd.params["kernel"]


def test_bidirectional_with_mask(rng):
    layer = bidi({"GRU": {"units": 2, "return_sequences": True}}, merge_mode="sum")
    layer.dtype = np.float64
    layer.build((T, D), rng)
    x = rng.normal(size=(B, T, D))
    mask = np.array([[False, True, True, True], [True, True, False, True]])
    y, back = layer.forward(x, True, mask=mask)
    assert back(np.ones_like(y)).shape == x.shape
    # row 0 alone, without its padding step, gives the same last forward / first
    # backward outputs as with its mask
    y0, _ = layer.forward(x[:1, 1:], False)
    np.testing.assert_allclose(y[0, 1:], y0[0], rtol=1e-12)
    np.testing.assert_array_equal(layer.compute_mask(x, mask), mask)


def test_bidirectional_backward_layer_and_config_round_trip(rng):
    layer = bidi({"LSTM": {"units": 3}},
                 backward_layer={"LSTM": {"units": 3, "go_backwards": True,
                                          "activation": "relu"}})
    assert layer.backward_.activation.registered_name == "relu"
    again = layers.get(config_of(layer))
    assert config_of(again) == config_of(layer)
    plain = bidi({"GRU": {"units": 2}}, merge_mode="ave")
    assert config_of(plain)["Bidirectional"]["backward_layer"] is None
    assert config_of(layers.get(config_of(plain))) == config_of(plain)


def test_bidirectional_refusals(rng):
    with pytest.raises(ConfigError, match="merge_mode"):
        bidi({"LSTM": {"units": 3}}, merge_mode=None)
    with pytest.raises(ConfigError, match="recurrent"):
        bidi({"Dense": {"units": 3}})
    with pytest.raises(ConfigError, match="return_sequences"):
        bidi({"LSTM": {"units": 3}}, backward_layer={"LSTM": {
            "units": 3, "return_sequences": True, "go_backwards": True}})
    with pytest.raises(ConfigError, match="go_backwards"):
        bidi({"LSTM": {"units": 3}}, backward_layer={"LSTM": {"units": 3}})


def test_time_distributed_dense(rng):
    layer = layers.get({"TimeDistributed": {"layer": {"Dense": {"units": 2,
                                                                "activation": "tanh"}}}})
    x = rng.normal(size=(B, T, D))
    y = check_layer(layer, x)
    W, b = layer.params["kernel"], layer.params["bias"]
    np.testing.assert_allclose(y, np.tanh(x @ W + b))
    assert y.shape == (B, T, 2)
    assert layer.compute_mask(x, np.ones((B, T), bool)).shape == (B, T)
    assert config_of(layers.get(config_of(layer))) == config_of(layer)


def test_time_distributed_over_images(rng):
    layer = layers.get({"TimeDistributed": {"layer": "Flatten"}})
    y = check_layer(layer, rng.normal(size=(B, T, 2, 3)))
    assert y.shape == (B, T, 6)
