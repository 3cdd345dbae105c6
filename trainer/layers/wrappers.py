"""Layer wrappers: Bidirectional (an RNN both ways) and TimeDistributed (a layer per step).

Both own an inner layer built from its config (``{layer: {LSTM: {units: 32}}}``) and
expose its weights as their own, so the optimizer, regularizers and checkpoints see
them like any layer's.
"""

import copy
from typing import Literal

import numpy as np

from trainer.distributed import shard
from trainer.engine.layer import Layer, snake_case
from trainer.config.families import layers
from trainer.config.registry import component


def _inner(spec, owner):
    layer = layers.get(spec)
    if not isinstance(layer, Layer):
        raise owner.error(f"expects a layer, got {spec!r}")
    if layer.name is None:
        layer.name = snake_case(type(layer).registered_name)
    if layer.activity_regularizer is not None:
        raise owner.error(f"the wrapped {type(layer).registered_name} has an "
                          f"activity_regularizer, which is not applied inside a wrapper "
                          f"here; put an ActivityRegularization layer after "
                          f"{type(owner).registered_name} instead")
    return layer


@layers.register("Bidirectional")
class Bidirectional(Layer):
    """Runs a recurrent layer forwards and a copy of it backwards, and merges them.

    Args:
        layer: the recurrent layer, e.g. ``{LSTM: {units: 32, return_sequences: true}}``.
        merge_mode: how the two outputs combine: ``concat`` (default, last axis), ``sum``,
            ``mul`` or ``ave``. (Keras's ``None``, two outputs, is not supported.)
        backward_layer: optional layer for the backward direction (same units and
            return_sequences); default a copy of ``layer`` with go_backwards flipped.
    The backward output sequence is flipped back to the input order before merging.
    Weights are named as Keras: ``forward_lstm/kernel``, ..., ``backward_lstm/kernel``, ...
    """

    takes_mask = True

    def __init__(self, layer: component("layer"),
                 merge_mode: Literal["concat", "sum", "mul", "ave"] = "concat",
                 backward_layer: component("layer") = None,
                 name: str | None = None, trainable: bool = True):
        super().__init__(name=name, trainable=trainable)
        if merge_mode not in MERGES:
            raise self.error(f"merge_mode must be one of {', '.join(MERGES)}, "
                             f"got {merge_mode!r}")
        self.merge_mode = merge_mode
        self.layer = _inner(layer, self)
        if not hasattr(self.layer, "go_backwards"):
            raise self.error(f"wraps a recurrent layer, got {type(self.layer).__name__}")
        if backward_layer is None:
            back = copy.deepcopy(self.layer)
            back.go_backwards = not self.layer.go_backwards
        else:
            back = _inner(backward_layer, self)
        for sub in (self.layer, back):
            if not hasattr(sub, "return_sequences"):
                raise self.error(f"wraps a recurrent layer, got {type(sub).__name__}")
            if getattr(sub, "return_state", False):
                raise self.error("return_state inside Bidirectional is not supported")
        if back.go_backwards == self.layer.go_backwards:
            raise self.error("backward_layer must read the other way: its go_backwards "
                             "must differ from layer's")
        if back.return_sequences != self.layer.return_sequences:
            raise self.error("backward_layer must have the same return_sequences as layer")
        self.backward_layer = None if backward_layer is None else back
        self.forward_layer, self.backward_ = self.layer, back
        self.rng = np.random.default_rng(0)

    @property
    def rng(self):
        return self._rng

    @rng.setter
    def rng(self, value):  # the model's noise stream reaches both directions
        self._rng = value
        for sub in (self.forward_layer, self.backward_):
            if hasattr(sub, "rng"):
                sub.rng = value

    def _subs(self):
        return (("forward_" + self.layer.name, self.forward_layer),
                ("backward_" + self.layer.name, self.backward_))

    def _link(self):
        """Our weight dicts hold the sub-layers' arrays under Keras's prefixed names."""
        self.params, self.grads, self.buffers, self.regularizers = {}, {}, {}, {}
        for prefix, sub in self._subs():
            for mine, theirs in ((self.params, sub.params), (self.grads, sub.grads),
                                 (self.buffers, sub.buffers),
                                 (self.regularizers, sub.regularizers)):
                mine.update({f"{prefix}/{k}": v for k, v in theirs.items()})

    def build(self, input_shape, rng):
        shapes = []
        for _, sub in self._subs():
            sub.dtype = self.dtype
            shapes.append(tuple(sub.build(input_shape, rng)))
            sub.built = True
            sub.input_shape, sub.output_shape = input_shape, shapes[-1]
        if shapes[0][:-1] != shapes[1][:-1] or (
                self.merge_mode != "concat" and shapes[0] != shapes[1]):
            raise self.error(f"the two directions give shapes {shapes[0]} and "
                             f"{shapes[1]}, which merge_mode {self.merge_mode} can't merge")
        self._link()
        if self.merge_mode == "concat":
            return (*shapes[0][:-1], shapes[0][-1] + shapes[1][-1])
        return shapes[0]

    def cast(self, dtype):
        self.dtype = dtype
        for _, sub in self._subs():
            sub.cast(dtype)
        self._link()

    def compute_mask(self, x, mask):
        return mask if self.layer.return_sequences else None

    def forward(self, x, training, mask=None):
        yf, back_f = self.forward_layer.forward(x, training, mask=mask)
        yb, back_b = self.backward_.forward(x, training, mask=mask)
        seq = self.layer.return_sequences
        if seq:
            yb = yb[:, ::-1]  # back to the input's time order
        y, merge_back = MERGES[self.merge_mode](yf, yb)

        def backward(dy):
            dyf, dyb = merge_back(dy)
            if seq:
                dyb = np.ascontiguousarray(dyb[:, ::-1])
            return back_f(dyf) + back_b(dyb)

        return y, backward


def _concat(a, b):
    n = a.shape[-1]
    return np.concatenate([a, b], axis=-1), lambda dy: (dy[..., :n], dy[..., n:])


def _sum(a, b):
    return a + b, lambda dy: (dy, dy)


def _mul(a, b):
    return a * b, lambda dy: (dy * b, dy * a)


def _ave(a, b):
    return (a + b) * a.dtype.type(0.5), lambda dy: (dy * 0.5, dy * 0.5)


MERGES = {"concat": _concat, "sum": _sum, "mul": _mul, "ave": _ave}


@layers.register("TimeDistributed")
class TimeDistributed(Layer):
    """Applies ``layer`` to every time step: ``(batch, time, *s) → (batch, time, *s')``.

    The steps are folded into the batch (one call on ``(batch*time, *s)``), so a
    wrapped Dense is one GEMM. Weights keep the inner layer's names (``kernel``,
    ``bias``), as Keras stores them. A mask passes through unchanged.

    Args:
        layer: the layer to apply, e.g. ``{Dense: {units: 10, activation: softmax}}``.
    """

    takes_mask = False
    passes_mask = True

    def __init__(self, layer: component("layer"), name: str | None = None,
                 trainable: bool = True):
        super().__init__(name=name, trainable=trainable)
        self.layer = _inner(layer, self)
        if self.layer.multi_input or self.layer.multi_output:
            raise self.error("wraps a layer with one input and one output")

    @property
    def rng(self):
        return getattr(self.layer, "rng", None)

    @rng.setter
    def rng(self, value):
        if hasattr(self.layer, "rng"):
            self.layer.rng = value

    def _link(self):
        inner = self.layer
        self.params, self.grads = inner.params, inner.grads
        self.buffers, self.regularizers = inner.buffers, inner.regularizers

    def build(self, input_shape, rng):
        if len(input_shape) < 2:
            raise self.error(f"needs inputs of at least (time, features), got "
                             f"{tuple(input_shape)}")
        inner = self.layer
        inner.dtype = self.dtype
        out = tuple(inner.build(tuple(input_shape[1:]), rng))
        inner.built = True
        inner.input_shape, inner.output_shape = tuple(input_shape[1:]), out
        self._link()
        return (input_shape[0], *out)

    def cast(self, dtype):
        self.dtype = dtype
        self.layer.cast(dtype)
        self._link()

    def forward(self, x, training):
        B, T = x.shape[:2]
        with shard.folded(T):  # a sample's masks: its T rows, on every rank alike
            y, back = self.layer.forward(x.reshape(B * T, *x.shape[2:]), training)
        out = y.reshape(B, T, *y.shape[1:])

        def backward(dy):
            dx = back(dy.reshape(B * T, *dy.shape[2:]))
            return dx.reshape(x.shape)

        return out, backward
