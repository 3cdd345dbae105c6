"""Peak memory of a forward pass: inference holds a few activations at a time (each is
freed after its last reader, no backward closure keeps it), and a frozen base under a
trainable head keeps none of its caches while training. Measured with tracemalloc
(NumPy reports its arrays to it) after a first call has made the per-thread scratch
buffers; the bound comes from the model's own activation sizes, so a change that
keeps every activation alive again fails."""

import math
import tracemalloc

import numpy as np
import pytest

from conftest import write_config
from trainer.app import fit as api
from trainer.engine import fusion

BLOCK = """\
    - Conv2D: {{name: b{i}_conv1, filters: 16, kernel_size: 3, padding: same, inputs: {x}}}
    - BatchNormalization: {{name: b{i}_bn1{frozen}}}
    - Activation: {{name: b{i}_relu1, activation: relu}}
    - Conv2D: {{name: b{i}_conv2, filters: 16, kernel_size: 1}}
    - BatchNormalization: {{name: b{i}_bn2{frozen}}}
    - Add: {{name: b{i}_add, inputs: [b{i}_bn2, {x}]}}
    - Activation: {{name: b{i}_out, activation: relu}}
"""


def _model(tmp_path, blocks=6, frozen=False):
    flag = ", trainable: false" if frozen else ""
    body = "    - Conv2D: {name: stem, filters: 16, kernel_size: 3, padding: same" + (
        flag + ", inputs: image}\n")
    x = "stem"
    for i in range(blocks):
        body += BLOCK.format(i=i, x=x, frozen=flag)
        x = f"b{i}_out"
    text = ("seed: 1\ndata: {train: {dataset: iris}}\nmodel:\n"
            "  inputs: {image: {shape: [32, 32, 3]}}\n  layers:\n" + body +
            "    - GlobalAveragePooling2D\n"
            "    - Dense: {name: head, units: 3, activation: softmax}\n"
            "  outputs: [head]\n"
            "compile: {loss: categorical_crossentropy, optimizer: adam}\n")
    model = api.build(api.load_config(write_config(tmp_path, text)))
    if frozen:
        for layer in model.layers:
            layer.trainable = layer.name == "head"
    return model


def _bounds(model, n):
    """(bound, all activations): twice the two largest activations plus the
    weights, and the bytes of every activation of the graph together."""
    sizes = sorted(math.prod(s) * n * 4 for s in model.graph.shapes)
    weights = sum(w.nbytes for ws in model.get_weights().values() for w in ws)
    return 2 * (sizes[-1] + sizes[-2]) + weights, sum(sizes)


def _peak(run):
    run()  # the scratch buffers, the first call's caches
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        run()
        return tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("fused", [True, False])
def test_inference_holds_a_few_activations(tmp_path, monkeypatch, fused):
    if not fused:  # the freeing alone, without the fused chains
        monkeypatch.setattr(fusion, "plan", lambda graph, training, needed: ({}, set()))
    model, n = _model(tmp_path), 16
    x = np.random.default_rng(0).normal(size=(n, 32, 32, 3)).astype(np.float32)
    bound, everything = _bounds(model, n)
    assert everything > 3 * bound  # keeping them all would fail by far
    peak = _peak(lambda: model.predict_on_batch([x]))
    assert peak < bound, f"peak {peak / 2**20:.1f} MiB, bound {bound / 2**20:.1f} MiB"


def test_a_frozen_base_keeps_no_caches_while_training(tmp_path):
    model, n = _model(tmp_path, frozen=True), 16
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 32, 32, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    bound, everything = _bounds(model, n)
    assert everything > 3 * bound
    peak = _peak(lambda: model.train_on_batch([x], [y]))
    assert peak < bound, f"peak {peak / 2**20:.1f} MiB, bound {bound / 2**20:.1f} MiB"


def test_gradients_are_made_when_first_used(tmp_path):
    """A model that only predicts holds no gradient arrays (ResNet50: 100 MB); a
    frozen layer never gets one; the optimizer's pairs follow the weights' order."""
    model, n = _model(tmp_path, blocks=1, frozen=True), 4
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 32, 32, 3)).astype(np.float32)
    model.predict_on_batch([x])
    assert all(len(dict.keys(layer.grads)) == 0 for layer in model.layers)
    model.train_on_batch([x], [np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]])
    made = {layer.name for layer in model.layers if len(dict.keys(layer.grads))}
    assert made == {"head"}
    assert [g.shape for g in model.grads()] == [p.shape for p in model.params()]
    head = model.layers[-1]
    assert list(head.grads) == list(head.params) == ["kernel", "bias"]
