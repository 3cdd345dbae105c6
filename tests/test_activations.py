import math

import numpy as np
import pytest

from gradcheck import check_layer
from trainer.errors import ConfigError
from trainer.config.families import activations, initializers, layers

X = np.array([-3.0, -1.2, -0.3, 0.4, 1.1, 2.7])
ERF = np.vectorize(math.erf)
SIG = 1 / (1 + np.exp(-X))
EXPECT = {
    "elu": np.where(X > 0, X, np.exp(X) - 1),
    "selu": 1.0507009873554805 * np.where(X > 0, X, 1.6732632423543772 * (np.exp(X) - 1)),
    "softplus": np.log1p(np.exp(X)),
    "softsign": X / (1 + np.abs(X)),
    "hard_sigmoid": np.clip(0.2 * X + 0.5, 0, 1),
    "exponential": np.exp(X),
    "swish": X * SIG,
    "silu": X * SIG,
    "gelu": 0.5 * X * (1 + ERF(X / np.sqrt(2))),
    "linear": X, "relu": np.maximum(X, 0), "sigmoid": SIG, "tanh": np.tanh(X),
}


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_named_activation_values_and_gradients(name, rng):
    fn = activations.get(name)
    np.testing.assert_allclose(fn.forward(X), EXPECT[name], rtol=1e-12, atol=1e-12)
    x = rng.normal(size=(3, 5)) * 2
    x[np.abs(x) < 0.05] = 0.3  # away from kinks (relu, elu at 0)
    x[np.abs(np.abs(x) - 2.5) < 0.05] = 1.0  # hard_sigmoid's corners
    check_layer(layers.get({"Activation": name}), x)


def test_gelu_approximate_and_elu_alpha(rng):
    fn = activations.get({"gelu": {"approximate": True}})
    tanh_form = 0.5 * X * (1 + np.tanh(np.sqrt(2 / np.pi) * (X + 0.044715 * X ** 3)))
    np.testing.assert_allclose(fn.forward(X), tanh_form)
    check_layer(layers.get({"Activation": {"activation": {"gelu": {"approximate": True}}}}), rng.normal(size=(2, 4)))
    np.testing.assert_allclose(activations.get({"elu": {"alpha": 0.5}}).forward(X),
                               np.where(X > 0, X, 0.5 * (np.exp(X) - 1)))


@pytest.mark.parametrize("name", ["relu", "elu", "selu", "softplus", "swish", "gelu",
                                  "hard_sigmoid", "softsign"])
def test_activations_keep_float32(name):
    x = X.astype(np.float32)
    fn = activations.get(name)
    y = fn.forward(x)
    assert y.dtype == np.float32
    assert fn.backward(x, y, np.ones_like(x)).dtype == np.float32


def test_leaky_relu_elu_relu_softmax_layers(rng):
    x = rng.normal(size=(3, 6))
    x[np.abs(x) < 0.05] = 0.5
    y = check_layer(layers.get("LeakyReLU"), x)
    np.testing.assert_allclose(y, np.where(x > 0, x, 0.3 * x))
    y = check_layer(layers.get({"ELU": {"alpha": 0.7}}), x)
    np.testing.assert_allclose(y, np.where(x > 0, x, 0.7 * np.expm1(x)))
    y = check_layer(layers.get({"Softmax": {"axis": 1}}), x)
    np.testing.assert_allclose(y.sum(axis=1), 1)


def test_relu_layer_keras_formula(rng):
    layer = layers.get({"ReLU": {"max_value": 1.0, "negative_slope": 0.1, "threshold": 0.2}})
    y, _ = layer.forward(np.array([-1.0, 0.1, 0.5, 1.0, 3.0]), False)
    np.testing.assert_allclose(y, [-0.12, -0.01, 0.5, 1.0, 1.0])
    x = np.array([[-1.0, 0.1, 0.5, 0.9, 3.0]])
    check_layer(layer, x)
    with pytest.raises(ConfigError, match="max_value"):
        layers.get({"ReLU": {"max_value": -1}})


def test_prelu_weights_and_shared_axes(rng):
    x = rng.normal(size=(2, 3, 4, 5))
    x[np.abs(x) < 0.05] = 0.5
    layer = layers.get({"PReLU": {"alpha_initializer": {"constant": 0.25},
                                  "shared_axes": [1, 2]}})
    y = check_layer(layer, x)
    assert layer.params["alpha"].shape == (1, 1, 5)
    np.testing.assert_allclose(y, np.where(x > 0, x, 0.25 * x))
    full = layers.get({"PReLU": {"alpha_initializer": {"random_uniform": {}}}})
    check_layer(full, x)
    assert full.params["alpha"].shape == (3, 4, 5)


def test_more_initializers():
    rng = np.random.default_rng(0)
    w = initializers.get({"truncated_normal": {"stddev": 0.1}})((2000,), rng, np.float64)
    assert np.abs(w).max() <= 0.2 and 0.07 < w.std() < 0.1
    w = initializers.get({"orthogonal": {"gain": 2.0}})((3, 3, 4, 8), rng, np.float32)
    m = w.reshape(-1, 8)
    np.testing.assert_allclose(m.T @ m, 4 * np.eye(8), atol=1e-4)
    np.testing.assert_array_equal(initializers.get({"identity": {"gain": 3}})((2, 3), rng,
                                                                                np.float32),
                                  3 * np.eye(2, 3))
    vs = initializers.get({"variance_scaling": {"scale": 2.0, "mode": "fan_out",
                                                "distribution": "uniform"}})
    assert abs(vs((100, 400), rng, np.float64).var() * 400 / 2 - 1) < 0.05
    vs = initializers.get({"VarianceScaling": {"distribution": "untruncated_normal"}})
    assert abs(vs((400, 100), rng, np.float64).var() * 400 - 1) < 0.05
    with pytest.raises(ConfigError, match="identity"):
        initializers.get("identity")((2, 2, 2), rng, np.float32)
