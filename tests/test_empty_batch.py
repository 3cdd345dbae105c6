"""Every layer takes a batch of zero rows, forward and backward, in training and
inference: under MPI the last batch of an epoch may be smaller than the world, and a
rank whose share is empty still runs the model (BatchNormalization's statistics are
summed over every rank, so no rank may skip its forward pass)."""

from pathlib import Path

import numpy as np
import pytest

from trainer.config import families
from test_round_trip import REQUIRED

#: input shapes tried, in order, until the layer builds on one (no batch axis)
SHAPES = [(6,), (5, 4), (6, 6, 3), (4, 4, 4, 2)]
#: layers taking a list of inputs: two of the same shape (Dot, Attention: matching)
MERGE_SHAPE = (5, 4)
#: layers that are no node of their own (nothing to run)
NOT_A_NODE = {"InputLayer"}
#: arguments beyond test_round_trip's REQUIRED (groups that divide the channels)
EXTRA = {"GroupNormalization": {"groups": 2}}
LAYERS = [n for n in families.ALL["layer"].names() if n not in NOT_A_NODE]


def _model(name, shapes):
    from trainer.build.builder import build_model
    from trainer.config.loader import from_dict

    args = EXTRA.get(name) or REQUIRED.get(("layer", name))
    spec = {name: args} if args else name
    if len(shapes) == 1:
        model = {"input_shape": list(shapes[0]), "layers": [spec]}
    else:
        names = [f"in{i}" for i in range(len(shapes))]
        layer = {name: {**(args or {}), "name": "node", "inputs": names}}
        model = {"inputs": {n: {"shape": list(s)} for n, s in zip(names, shapes)},
                 "layers": [layer], "outputs": ["node"]}
    cfg = from_dict({"data": {"train": {"dataset": "iris"}}, "model": model,
                     "compile": {"loss": "mse", "optimizer": "sgd"}}, Path("t.yaml"))
    return build_model(cfg)


def _built(name):
    from trainer.errors import TrainerError

    layer_cls = families.ALL["layer"].lookup(name)
    candidates = ([[MERGE_SHAPE, MERGE_SHAPE]] if getattr(layer_cls, "multi_input", False)
                  else [[s] for s in SHAPES])
    for shapes in candidates:
        try:
            return _model(name, shapes), shapes
        except TrainerError:
            continue
    pytest.fail(f"{name} built on none of {candidates}")


# BatchNormalization alone in one process: the statistics of zero rows are NaN (under
# MPI they are the global batch's, summed over the ranks)
@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value")
@pytest.mark.parametrize("name", LAYERS)
def test_a_batch_of_zero_rows(name):
    model, shapes = _built(name)
    graph = model.graph
    dtype = np.float32
    xs = [np.zeros((0, *s), dtype) for s in shapes]
    if name == "Embedding":
        xs = [np.zeros((0, *s), np.int64) for s in shapes]
    for training in (False, True):
        outs = graph.forward(xs, training=training)
        for out in outs:
            assert out.shape[0] == 0, (training, out.shape)
    graph.backward([np.zeros_like(o) for o in outs])
    for layer in model.trainable_layers():
        for key, grad in layer.grads.items():
            assert grad.shape == layer.params[key].shape
            assert np.all(grad == 0), (layer.name, key)
