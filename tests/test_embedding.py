import numpy as np
import pytest

from conftest import write_config
from gradcheck import check_layer
from trainer.app import fit as api
from trainer.errors import DataError
from trainer.config.families import layers


def make(**args):
    return layers.get({"Embedding": dict({"input_dim": 7, "output_dim": 3}, **args)})


def test_forward_is_a_table_lookup(rng):
    layer = make()
    ids = np.array([[1, 2, 2, 6], [0, 6, 3, 3]])
    y = check_layer(layer, ids)  # repeated ids: gradients summed per row
    np.testing.assert_array_equal(y, layer.params["embeddings"][ids])
    assert y.shape == (2, 4, 3)
    table = make(embeddings_initializer={"random_normal": {"stddev": 1.0}})
    check_layer(table, rng.integers(0, 7, (3, 2, 2)))  # any number of id axes


def test_default_initializer_is_keras_uniform(rng):
    layer = make(input_dim=500, output_dim=20)
    layer.build((4,), rng)
    w = layer.params["embeddings"]
    assert w.min() >= -0.05 and w.max() <= 0.05 and w.std() > 0.02


def test_backward_scatters_like_add_at(rng):
    layers.names()  # registry first: importing a layer module early reorders the schema
    from trainer.layers.embedding import scatter_rows

    ids = rng.integers(0, 50, 300)
    rows = rng.normal(size=(300, 4))
    ours, ref = np.zeros((50, 4)), np.zeros((50, 4))
    scatter_rows(ours, ids, rows)
    np.add.at(ref, ids, rows)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_integer_ids_keep_their_dtype_and_no_input_gradient():
    layer = make()
    layer.build((3,), np.random.default_rng(0))
    y, back = layer.forward(np.array([[1, 2, 3]], np.int64), training=True)
    assert back(np.ones_like(y)) is None
    np.testing.assert_array_equal(layer.grads["embeddings"][1:4], 1)


def test_mask_zero():
    layer = make(mask_zero=True)
    ids = np.array([[0, 0, 4], [2, 0, 1]])
    np.testing.assert_array_equal(layer.compute_mask(ids, None),
                                  [[False, False, True], [True, False, True]])
    assert make().compute_mask(ids, None) is None


def test_out_of_range_or_fractional_ids_are_data_errors():
    layer = make()
    layer.build((2,), np.random.default_rng(0))
    with pytest.raises(DataError, match=r"\[0, 7\)"):
        layer.forward(np.array([[1, 7]]), training=False)
    with pytest.raises(DataError, match="whole-number"):
        layer.forward(np.array([[1.5, 2]]), training=False)


def test_regularizer_is_reported_to_the_model():
    layer = make(embeddings_regularizer={"l2": 0.1})
    layer.build((2,), np.random.default_rng(0))
    assert "embeddings" in layer.regularizers


CONFIG = """
name: emb
data:
  train: {dataset: marker_order, subset: train, n: 200}
model:
  layers:
    - Embedding: {input_dim: 16, output_dim: 4, input_length: 24, mask_zero: true}
    - GRU: {units: 3}
    - Dense: {units: 4, activation: softmax}
compile:
  loss: sparse_categorical_crossentropy
  optimizer: adam
fit: {epochs: 1, batch_size: 32}
"""


def test_model_keeps_integer_ids_and_input_length_sets_the_shape(workdir):
    cfg = api.load_config(write_config(workdir, CONFIG))
    model = api.build(cfg)
    assert model.graph.shapes[0] == (24,)  # from input_length; input_dim is the vocabulary
    assert model._int_inputs == {0}
    ids = np.array([[0] * 20 + [1, 5, 2, 9]], np.int32)
    assert model.cast_inputs([ids])[0].dtype == np.int32
    assert model.predict_on_batch([ids])[0].shape == (1, 4)
