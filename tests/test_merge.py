"""Merge layers: values against NumPy, gradients by finite differences, shape checks."""

import numpy as np
import pytest

from gradcheck import check_layer
from trainer.errors import ConfigError
from trainer.registries import layers
from trainer.registry import config_of


def make(spec):
    return layers.get(spec)


def inputs(rng, *shapes):
    return [rng.normal(size=(3, *s)) for s in shapes]


@pytest.mark.parametrize("name, reference", [
    ("Add", lambda a, b, c: a + b + c),
    ("Multiply", lambda a, b, c: a * b * c),
    ("Average", lambda a, b, c: (a + b + c) / 3),
    ("Maximum", lambda a, b, c: np.maximum(np.maximum(a, b), c)),
    ("Minimum", lambda a, b, c: np.minimum(np.minimum(a, b), c)),
])
def test_elementwise_three_inputs(rng, name, reference):
    xs = inputs(rng, (4,), (4,), (4,))
    y = check_layer(make(name), xs)
    np.testing.assert_allclose(y, reference(*xs))


def test_subtract(rng):
    a, b = inputs(rng, (2, 4), (2, 4))
    np.testing.assert_allclose(check_layer(make("Subtract"), [a, b]), a - b)


def test_maximum_gradient_goes_to_the_winner():
    layer = make("Maximum")
    layer.build([(2,), (2,)], None)
    a, b = np.array([[1.0, 5.0]]), np.array([[3.0, 2.0]])
    y, back = layer.forward([a, b], True)
    da, db = back(np.array([[10.0, 20.0]]))
    np.testing.assert_array_equal(y, [[3.0, 5.0]])
    np.testing.assert_array_equal(da, [[0.0, 20.0]])
    np.testing.assert_array_equal(db, [[10.0, 0.0]])


@pytest.mark.parametrize("name", ["Add", "Subtract", "Multiply", "Average", "Maximum"])
def test_broadcasting_as_keras(rng, name):
    # Keras: dims equal or 1, and a lower-rank input gets axes after the batch axis
    a, b = inputs(rng, (4, 3), (1, 3))
    y = check_layer(make(name), [a, b])
    assert y.shape == (3, 4, 3)
    a, b = inputs(rng, (4, 3), (3,))
    layer = make(name)
    y = check_layer(layer, [a, b])
    assert layer.output_shape == (4, 3) and y.shape == (3, 4, 3)
    if name == "Add":
        np.testing.assert_allclose(y, a + b[:, None, :])


@pytest.mark.parametrize("name", ["Add", "Multiply", "Maximum", "Subtract"])
def test_elementwise_shape_error_names_both_shapes(name):
    with pytest.raises(ConfigError) as info:
        make(name).build([(4, 3), (4, 5)], None)
    assert "(None, 4, 3)" in str(info.value) and "(None, 4, 5)" in str(info.value)
    assert f"({name})" in str(info.value)


def test_input_counts():
    with pytest.raises(ConfigError, match="at least 2 inputs, got 1"):
        make("Add").build([(3,)], None)
    with pytest.raises(ConfigError, match="exactly 2 inputs, got 3"):
        make("Subtract").build([(3,)] * 3, None)
    with pytest.raises(ConfigError, match="exactly 2 inputs, got 1"):
        make({"Dot": {"axes": 1}}).build([(3,)], None)
    with pytest.raises(ConfigError, match="at least 2 inputs"):
        make("Concatenate").build([(3,)], None)


def test_concatenate_values_and_gradients(rng):
    a, b, c = inputs(rng, (2, 3), (2, 1), (2, 2))
    y = check_layer(make("Concatenate"), [a, b, c])
    np.testing.assert_array_equal(y, np.concatenate([a, b, c], axis=-1))
    a, b = inputs(rng, (2, 3), (4, 3))
    layer = make({"Concatenate": {"axis": 1}})
    y = check_layer(layer, [a, b])
    assert layer.output_shape == (6, 3)
    np.testing.assert_array_equal(y, np.concatenate([a, b], axis=1))


def test_concatenate_shape_errors():
    with pytest.raises(ConfigError) as info:
        make("Concatenate").build([(4, 3), (5, 2)], None)
    message = str(info.value)
    assert "(None, 4, 3)" in message and "(None, 5, 2)" in message and "axis -1" in message
    with pytest.raises(ConfigError, match="same rank"):
        make("Concatenate").build([(4, 3), (2,)], None)
    with pytest.raises(ConfigError, match="axis 0 is not a non-batch axis"):
        make({"Concatenate": {"axis": 0}}).build([(4,), (2,)], None)
    with pytest.raises(ConfigError, match="axis 3"):
        make({"Concatenate": {"axis": 3}}).build([(4,), (2,)], None)


def test_dot_values_as_keras(rng):
    a, b = inputs(rng, (5,), (5,))
    y = check_layer(make({"Dot": {"axes": 1}}), [a, b])
    np.testing.assert_allclose(y, (a * b).sum(axis=1, keepdims=True))
    y = check_layer(make({"Dot": {"axes": -1, "normalize": True}}), [a, b])
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(y[:, 0], cos)
    # batch_dot (N, 4, 3) · (N, 5, 3) on the last axes → (N, 4, 5)
    a, b = inputs(rng, (4, 3), (5, 3))
    layer = make({"Dot": {"axes": [2, 2]}})
    y = check_layer(layer, [a, b])
    assert layer.output_shape == (4, 5)
    np.testing.assert_allclose(y, np.einsum("nij,nkj->nik", a, b))
    a, b = inputs(rng, (3, 4), (5, 3))
    layer = make({"Dot": {"axes": [1, 2], "normalize": True}})
    check_layer(layer, [a, b])
    assert layer.output_shape == (4, 5)


def test_dot_shape_error_names_both_shapes():
    with pytest.raises(ConfigError) as info:
        make({"Dot": {"axes": 1}}).build([(4,), (5,)], None)
    assert "(None, 4)" in str(info.value) and "(None, 5)" in str(info.value)
    with pytest.raises(ConfigError, match="a list of two"):
        make({"Dot": {"axes": [1, 1, 1]}})


@pytest.mark.parametrize("spec", ["Add", "Subtract", "Multiply", "Average", "Maximum",
                                  "Minimum", {"Concatenate": {"axis": 1}},
                                  {"Dot": {"axes": [1, 2], "normalize": True}}])
def test_config_round_trip(spec):
    layer = make(spec)
    layer.name = "m"
    again = make(config_of(layer))
    assert config_of(again) == config_of(layer)
