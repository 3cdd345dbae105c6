import numpy as np
import pytest

from gradcheck import check_layer
from trainer.errors import ConfigError
from trainer.config.families import activations, layers


def make(spec):
    return layers.get(spec)


def test_dense_forward_matches_numpy(rng):
    x = rng.normal(size=(4, 3))
    layer = make({"Dense": {"units": 5, "activation": "tanh"}})
    y = check_layer(layer, x)
    W, b = layer.params["kernel"], layer.params["bias"]
    np.testing.assert_allclose(y, np.tanh(x @ W + b))


@pytest.mark.parametrize("act", ["linear", "sigmoid", "tanh", "softmax", "relu"])
def test_dense_gradients(rng, act):
    x = rng.normal(size=(3, 4))
    if act == "relu":
        x = np.abs(x) + 0.5  # away from the kink
    check_layer(make({"Dense": {"units": 3, "activation": act,
                                "kernel_initializer": {"random_normal": {"stddev": 0.5}},
                                "bias_initializer": {"constant": 0.1}}}), x)


def test_dense_on_3d_input(rng):
    check_layer(make({"Dense": {"units": 2, "use_bias": False}}), rng.normal(size=(2, 3, 4)))


def test_flatten_and_activation(rng):
    y = check_layer(make("Flatten"), rng.normal(size=(2, 3, 4)))
    assert y.shape == (2, 12)
    y = check_layer(make({"Activation": "sigmoid"}), rng.normal(size=(2, 5)))
    assert np.all((y > 0) & (y < 1))


def test_dropout_training_and_inference(rng):
    layer = make({"Dropout": {"rate": 0.5}})
    x = np.ones((200, 50))
    layer.build(x.shape[1:], rng)
    y, _ = layer.forward(x, training=True)
    assert set(np.unique(y)) <= {0.0, 2.0}
    assert abs((y == 0).mean() - 0.5) < 0.05
    y, _ = layer.forward(x, training=False)
    np.testing.assert_array_equal(y, x)
    check_layer(make({"Dropout": {"rate": 0.3}}), rng.normal(size=(4, 6)))


def test_dropout_rate_one_is_refused():
    with pytest.raises(ConfigError):
        make({"Dropout": {"rate": 1.0}})


def test_softmax_sums_to_one(rng):
    y = activations.get("softmax").forward(rng.normal(size=(5, 7)) * 30)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0)


def test_sigmoid_is_stable_for_large_inputs():
    y = activations.get("sigmoid").forward(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_allclose(y, [0.0, 0.5, 1.0])


def test_dense_refuses_unknown_last_dim(rng):
    with pytest.raises(ConfigError, match="dense"):
        layer = make({"Dense": {"units": 2, "name": "dense"}})
        layer.build((None,), rng)


def test_dropout_noise_shape_that_does_not_fit_is_refused_at_build(rng):
    layer = make({"Dropout": {"rate": 0.5, "noise_shape": [None, 3], "name": "d"}})
    with pytest.raises(ConfigError, match="noise_shape \\[None, 3\\] does not fit"):
        layer.build((5,), rng)
    layer = make({"Dropout": {"rate": 0.5, "noise_shape": [None, 1, None]}})
    assert layer.build((4, 5), rng) == (4, 5)
