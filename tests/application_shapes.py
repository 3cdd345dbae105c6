"""Build an application's graph for its shapes and parameter counts only: weights are
zero-strided views (no memory, no initialisation), so VGG16's 138M parameters are
counted in a blink. For the family tests (a helper: it patches Layer.add_weight while
it builds)."""

import contextlib
from pathlib import Path

import numpy as np

from trainer.engine.layer import Layer


@contextlib.contextmanager
def shapes_only():
    """Inside, ``Layer.add_weight`` records shapes without allocating."""
    real = Layer.add_weight

    def add_weight(self, name, shape, initializer, rng, regularizer=None, trainable=True):
        value = np.broadcast_to(np.zeros((), self.dtype), tuple(int(d) for d in shape))
        (self.params if trainable else self.buffers)[name] = value
        if trainable:
            self.grads[name] = value
        return value

    Layer.add_weight = add_weight
    try:
        yield
    finally:
        Layer.add_weight = real


def application_graph(name, real_weights=False, **args):
    """The engine Graph of application ``name`` (weights: null unless given)."""
    from trainer.build.builder import build_graph, streams
    from trainer.config.loader import from_dict

    args.setdefault("weights", None)
    cfg = from_dict({"data": {"train": {"dataset": "iris"}},
                     "model": {"application": name, **args},
                     "compile": {"loss": "mse"}}, Path("application.yaml"))
    rng = streams(0)[0]
    if real_weights:
        return build_graph(cfg, rng)
    with shapes_only():
        return build_graph(cfg, rng)


def parameter_count(graph):
    return sum(sum(layer.count_params()) for layer in graph.layers())
