"""Convolution → BatchNormalization → relu (or → Add → relu) chains run as one step
(trainer/engine/fusion.py): folded into the convolution's weights at inference (within
float32 tolerance of the layers run one by one), the normalization then the rest in
place while training (the same bits); the folded weights are made from the weights
as they are at each call and never stored."""

import numpy as np
import pytest

from conftest import write_config
from trainer.app import fit as api
from trainer.engine import fusion

BLOCK = """\
seed: 5
data: {{train: {{dataset: iris}}}}
model:
  inputs: {{image: {{shape: [10, 10, 3]}}}}
  layers:
    - Conv2D: {{name: stem, filters: 8, kernel_size: 3, padding: same, inputs: image}}
    - BatchNormalization: {{name: stem_bn{frozen}}}
    - Activation: {{name: stem_relu, activation: relu}}
    - Conv2D: {{name: body1, filters: 8, kernel_size: 3, padding: same, use_bias: false}}
    - BatchNormalization: {{name: body1_bn{frozen}}}
    - ReLU: {{name: body1_relu}}
    - Conv2D: {{name: body2, filters: 8, kernel_size: 1}}
    - BatchNormalization: {{name: body2_bn, center: false{frozen}}}
    - Add: {{name: add, inputs: [body2_bn, stem_relu]}}
    - Activation: {{name: out_relu, activation: relu}}
    - GlobalAveragePooling2D
    - Dense: {{units: 3, activation: softmax}}
  outputs: [dense]
compile: {{loss: categorical_crossentropy, optimizer: adam}}
"""


def _model(tmp_path, frozen=False):
    text = BLOCK.format(frozen=", trainable: false" if frozen else "")
    tmp_path.mkdir(exist_ok=True)
    model = api.build(api.load_config(write_config(tmp_path, text)))
    rng = np.random.default_rng(1)
    for layer in model.layers:  # moving statistics, gamma and beta away from 1 and 0
        for name, w in {**layer.params, **layer.buffers}.items():
            if name == "moving_variance":
                w[...] = rng.uniform(0.5, 2.0, w.shape)
            elif name in ("moving_mean", "beta", "bias"):
                w[...] = rng.normal(0, 0.5, w.shape)
            elif name == "gamma":
                w[...] = rng.uniform(0.5, 1.5, w.shape)
    return model


def _unfused(monkeypatch):
    monkeypatch.setattr(fusion, "plan", lambda graph, training, needed: ({}, set()))


def _x(n=6, dtype=np.float32):
    return np.random.default_rng(2).normal(size=(n, 10, 10, 3)).astype(dtype)


def _chains(model, training):
    needed, _ = model.graph._needed_nodes()
    groups, members = fusion.plan(model.graph, training, needed)
    name = lambda k: model.graph.nodes[k].layer.name  # noqa: E731
    return sorted(name(k) for k in groups), sorted(name(k) for k in members)


def test_inference_folds_each_chain(tmp_path):
    heads, members = _chains(_model(tmp_path), training=False)
    assert heads == ["body1", "body2", "stem"]
    assert members == ["add", "body1_bn", "body1_relu", "body2_bn", "out_relu", "stem_bn",
                       "stem_relu"]


def test_folded_inference_matches_the_layers_one_by_one(tmp_path, monkeypatch):
    model, x = _model(tmp_path), _x()
    weights = {k: [w.copy() for w in v] for k, v in model.get_weights().items()}
    folded = model.predict_on_batch([x])[0]
    with monkeypatch.context() as m:
        _unfused(m)
        plain = model.predict_on_batch([x])[0]
    np.testing.assert_allclose(folded, plain, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(folded, np.full_like(folded, folded.flat[0]))
    for name, ws in model.get_weights().items():  # nothing folded was stored
        for a, b in zip(ws, weights[name]):
            np.testing.assert_array_equal(a, b)


def test_the_fold_follows_weights_that_change(tmp_path, monkeypatch):
    model, x = _model(tmp_path), _x()
    before = model.predict_on_batch([x])[0]
    bn = next(la for la in model.layers if la.name == "body1_bn")
    bn.set_weights([w * 1.7 + 0.1 for w in bn.get_weights()])  # as a loaded file would
    after = model.predict_on_batch([x])[0]
    with monkeypatch.context() as m:
        _unfused(m)
        plain = model.predict_on_batch([x])[0]
    assert np.abs(after - before).max() > 1e-4
    np.testing.assert_allclose(after, plain, rtol=1e-5, atol=1e-6)


def test_conv1d_folds_too(tmp_path, monkeypatch):
    text = """\
seed: 2
data: {train: {dataset: iris}}
model:
  input_shape: [12, 4]
  layers:
    - Conv1D: {filters: 6, kernel_size: 3, padding: causal}
    - BatchNormalization
    - Activation: relu
    - Flatten
    - Dense: {units: 3, activation: softmax}
compile: {loss: categorical_crossentropy, optimizer: adam}
"""
    model = api.build(api.load_config(write_config(tmp_path, text)))
    bn = model.layers[1]
    bn.buffers["moving_mean"][...] = np.linspace(-1, 1, 6)
    bn.buffers["moving_variance"][...] = np.linspace(0.3, 3, 6)
    x = np.random.default_rng(0).normal(size=(5, 12, 4)).astype(np.float32)
    assert _chains(model, training=False)[0] == [model.layers[0].name]
    folded = model.predict_on_batch([x])[0]
    with monkeypatch.context() as m:
        _unfused(m)
        plain = model.predict_on_batch([x])[0]
    np.testing.assert_allclose(folded, plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("frozen", [False, True])
def test_training_chains_give_the_same_update(tmp_path, monkeypatch, frozen):
    """BatchNormalization → relu and → Add → relu in one step while training (batch
    statistics, or a frozen layer's moving ones): the same bits as one by one."""
    xs = [_x(8)]
    ys = [np.eye(3, dtype=np.float32)[np.arange(8) % 3]]
    fused_model = _model(tmp_path / "a", frozen=frozen)
    heads, _ = _chains(fused_model, training=True)
    assert heads == ["body1_bn", "body2_bn", "stem_bn"]
    with monkeypatch.context() as m:
        _unfused(m)
        plain_model = _model(tmp_path / "b", frozen=frozen)
        for _ in range(2):
            plain_loss = plain_model.train_on_batch(xs, ys)[0]
    for _ in range(2):
        fused_loss = fused_model.train_on_batch(xs, ys)[0]
    assert fused_loss == plain_loss
    plain = plain_model.get_weights()
    for name, ws in fused_model.get_weights().items():
        for a, b in zip(ws, plain[name]):
            np.testing.assert_array_equal(a, b)


def test_a_frozen_base_folds_in_training(tmp_path):
    """Under a trainable head a frozen base runs no backward: its chains fold."""
    model = _model(tmp_path, frozen=True)
    for layer in model.layers:
        if layer.name.startswith(("stem", "body")):
            layer.trainable = False
    heads, _ = _chains(model, training=True)
    assert heads == ["body1", "body2", "stem"]
