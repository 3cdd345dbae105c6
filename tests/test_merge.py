"""Merge layers: values against NumPy, gradients by finite differences, shape checks."""

import numpy as np
import pytest

from gradcheck import check_layer
from trainer.errors import ConfigError
from trainer.config.families import layers
from trainer.config.registry import config_of


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


def test_merge_layers_and_the_masks_of_their_inputs():
    """tf.keras 2: a merge ANDs the masks its inputs have; Concatenate treats an input
    without one as unmasked, and joins masks along time when it joins time steps."""
    from trainer.config.families import layers as registry

    x = np.zeros((2, 3, 4))
    m1 = np.array([[1, 1, 0], [1, 1, 1]], bool)
    m2 = np.array([[1, 0, 0], [1, 1, 1]], bool)
    add = registry.get("Add")
    assert add.compute_mask([x, x], None) is None
    assert add.compute_mask([x, x], [None, None]) is None
    np.testing.assert_array_equal(add.compute_mask([x, x], [m1, None]), m1)
    np.testing.assert_array_equal(add.compute_mask([x, x], [m1, m2]), m1 & m2)
    cat = registry.get({"Concatenate": {"axis": -1}})
    cat.build([(3, 4), (3, 4)], None)
    np.testing.assert_array_equal(cat.compute_mask([x, x], [m1, None]), m1)
    time = registry.get({"Concatenate": {"axis": 1}})
    time.build([(3, 4), (3, 4)], None)
    np.testing.assert_array_equal(time.compute_mask([x, x], [m1, None]),
                                  np.concatenate([m1, np.ones((2, 3), bool)], axis=1))
    assert cat.compute_mask([x[:, 0], x[:, 0]], [None, None]) is None


def test_encoder_block_keeps_padding_out_and_gradients_check():
    """Embedding(mask_zero) → MultiHeadAttention → residual Add → LayerNormalization →
    masked mean: the mask reaches the mean through the merge and the normalization,
    so the padding id's vector changes nothing; float64 finite differences agree."""
    from pathlib import Path

    from gradcheck import check_model
    from trainer.build.builder import build_model
    from trainer.config.loader import from_dict

    cfg = from_dict({
        "data": {"train": {"dataset": "iris"}},
        "model": {"inputs": {"ids": {"shape": [5]}}, "layers": [
            {"Embedding": {"name": "emb", "input_dim": 7, "output_dim": 4, "mask_zero": True,
                           "inputs": "ids"}},
            {"MultiHeadAttention": {"name": "att", "num_heads": 2, "key_dim": 2}},
            {"Add": {"name": "res", "inputs": ["emb", "att"]}},
            {"LayerNormalization": {"name": "norm"}},
            {"GlobalAveragePooling1D": {"name": "avg"}},
            {"Dense": {"name": "out", "units": 3, "activation": "softmax"}}],
            "outputs": ["out"]},
        "compile": {"loss": "categorical_crossentropy", "optimizer": "sgd"}}, Path("t.yaml"))
    model = build_model(cfg)
    ids = np.array([[1, 2, 3, 0, 0], [4, 5, 6, 1, 2], [3, 0, 0, 0, 0]])
    y = model.predict_on_batch([ids])[0]
    model.layers[0].params["embeddings"][0] += 4.0
    np.testing.assert_allclose(model.predict_on_batch([ids])[0], y, rtol=1e-5)
    check_model(model, [ids], [np.eye(3)[[0, 2, 1]]])
