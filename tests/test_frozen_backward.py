"""A frozen base under a trainable head: backward stops at the head (nothing upstream
trains, so the frozen layers' gradients are never used), with the same update as a
backward through every layer."""

import numpy as np

from conftest import write_config
from trainer.app import fit as api

CONFIG = """\
seed: 3
data: {train: {dataset: iris}}
model:
  input_shape: [4]
  layers:
    - Dense: {units: 16, activation: relu, trainable: false}
    - BatchNormalization: {trainable: false}
    - Dense: {units: 8, activation: tanh, trainable: false}
    - Dense: {units: 3, activation: softmax}
compile: {loss: categorical_crossentropy, optimizer: adam}
"""


def _model(tmp_path):
    return api.build(api.load_config(write_config(tmp_path, CONFIG)))


def _batch():
    rng = np.random.default_rng(0)
    return [rng.normal(size=(8, 4)).astype(np.float32)], \
        [np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)]]


def _count_backward(model, counts):
    for layer in model.layers:
        forward = layer.forward

        def counted(x, training, *args, _forward=forward, _name=layer.name, **kwargs):
            y, back = _forward(x, training, *args, **kwargs)

            def counted_back(dy):
                counts[_name] = counts.get(_name, 0) + 1
                return back(dy)

            if hasattr(back, "preactivation"):  # a softmax fused with its loss

                def preactivation(dz):
                    counts[_name] = counts.get(_name, 0) + 1
                    return back.preactivation(dz)
                counted_back.preactivation = preactivation
            return y, counted_back
        layer.forward = counted


def test_backward_stops_at_the_first_layer_that_trains(tmp_path):
    model, counts = _model(tmp_path), {}
    _count_backward(model, counts)
    frozen = [la.name for la in model.layers if not la.trainable]
    before = {name: [w.copy() for w in model.get_weights()[name]] for name in frozen}
    model.train_on_batch(*_batch())
    assert counts == {model.layers[-1].name: 1}  # the head alone
    assert not model.layers[-1].needs_input_grad  # and not even its input gradient
    for name in frozen:
        assert all(np.array_equal(a, b) for a, b in zip(before[name], model.get_weights()[name]))


def test_the_update_equals_a_backward_through_every_layer(tmp_path):
    skipping, full = _model(tmp_path), _model(tmp_path)
    full.graph.input_gradients = True  # every node's backward runs
    for model in (skipping, full):
        for _ in range(3):
            model.train_on_batch(*_batch())
    head = skipping.layers[-1].name
    for a, b in zip(skipping.get_weights()[head], full.get_weights()[head]):
        np.testing.assert_array_equal(a, b)


def test_a_trainable_layer_under_a_frozen_one_still_gets_its_gradient(tmp_path):
    model, counts = _model(tmp_path), {}
    model.layers[0].trainable = True  # trains below the frozen BatchNormalization/Dense
    _count_backward(model, counts)
    model.train_on_batch(*_batch())
    assert set(counts) == {la.name for la in model.layers}
