"""The layer contract the engine runs.

A layer owns its weights and says what it computes:

- ``build(input_shape, rng)`` creates the weights and returns the output shape.
  Shapes leave out the batch axis; a layer with several inputs gets a list.
- ``forward(x, training)`` returns ``(y, backward)``; ``backward(dy)`` returns ``dx``
  (a list for several inputs) and adds the weight gradients into ``self.grads``.
  Returning a closure keeps what backward needs per call, so one layer can be
  called at several places of a graph (shared layers).

Layers raise ``ConfigError`` for arguments or shapes that don't fit, at build time.
"""

import math
import re

import numpy as np

from trainer.errors import ConfigError
from trainer.memory import human_size, memory_bytes


#: each Layer subclass's forward as it was when the class was made (runs_own_forward)
_DEFINED_FORWARD = {}


class Layer:
    """Base class: weights, their gradients, and Keras-style naming."""

    #: Layers with several inputs (merge layers) get lists of shapes and arrays.
    multi_input = False
    #: Layers whose forward returns several arrays (an RNN with return_state): build
    #: returns a list of shapes, forward a list of arrays, and backward takes a list of
    #: gradients (None where an output is unused).
    multi_output = False
    #: Layers that take optional extra inputs after the main one (an RNN's initial
    #: states): called on several inputs they get lists, as multi_input layers do.
    extra_inputs = False
    #: Masks (Keras ``mask_zero``): a layer that reads its input's mask gets it as
    #: ``forward(x, training, mask=m)`` (m: bool (batch, time)); ``compute_mask`` gives
    #: the mask of its output. By default a mask stops at a layer; elementwise layers
    #: set ``passes_mask`` to hand it on unchanged.
    takes_mask = False
    passes_mask = False
    #: a layer called on several inputs that gets one mask per input (attention)
    takes_input_masks = False
    #: whether ``backward`` can take the gradient with respect to the input of the
    #: layer's ``activation`` (its backward closure has ``.preactivation``): Dense and
    #: Activation, whose softmax a cross-entropy loss may then fuse with (Graph.fusable_output)
    fuses_activation = False
    #: Keras's activity_regularizer (a penalty on the output); set from the argument in
    #: ``__init__``, None here for layers that never call it (user layers)
    activity_regularizer = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _DEFINED_FORWARD[cls] = cls.forward  # its own, or the one it inherits

    def runs_own_forward(self, cls):
        """Whether this layer's ``forward`` is the one class ``cls`` was defined with
        (not a subclass's, nor one replaced on the class or the layer since): what a
        fused step in its stead (trainer/engine/fusion.py's chains) reproduces."""
        return getattr(self.forward, "__func__", None) is _DEFINED_FORWARD.get(cls)

    def __init__(self, name: str | None = None, trainable: bool = True,
                 activity_regularizer=None):
        self.name = name
        self.trainable = trainable
        # Keras: a penalty on the layer's output, added to the loss divided by the
        # batch size (the graph runs it: Graph.forward)
        if activity_regularizer is not None:  # found by name in the registry the
            from trainer.config.families import regularizers  # regularizers fill

            self.activity_regularizer = regularizers.get(activity_regularizer)
        self.params = {}  # trainable weights, name → array, in Keras order
        self.grads = Grads(self.params)
        self.buffers = {}  # non-trainable weights (moving statistics)
        self.regularizers = {}  # weight name → regularizer
        self.dtype = np.float32
        self.built = False
        self.input_shape = None
        self.output_shape = None

    # -- building ---------------------------------------------------------
    def build(self, input_shape, rng):
        """Create weights for ``input_shape`` and return the output shape."""
        return input_shape

    def add_weight(self, name, shape, initializer, rng, regularizer=None, trainable=True):
        shape = tuple(int(d) for d in shape)
        need = math.prod(shape) * 8  # initializers draw in float64
        if need > memory_bytes() // 4:  # the weight, its gradient, optimizer slots
            raise self.error(f"weight '{name}' of shape {shape} would take {human_size(need)}"
                             f", more than this machine's memory allows; make it smaller")
        value = initializer(shape, rng, self.dtype)
        value = np.asarray(value, dtype=self.dtype, order="C")  # 0-d stays 0-d (a scale)
        if trainable:
            self.params[name] = value  # its gradient comes when first used (Grads)
        else:
            self.buffers[name] = value
        if regularizer is not None:
            self.regularizers[name] = regularizer
        return value

    def error(self, message):
        """A ConfigError that names this layer."""
        return ConfigError(f"layer '{self.name}' ({type(self).__name__}): {message}")

    def expect_rank(self, input_shape, axes):
        """A ConfigError unless ``input_shape`` (without batch) has one size per name in
        ``axes``, e.g. ``("rows", "cols", "channels")``."""
        if len(input_shape) != len(axes):
            raise self.error(f"expects inputs of rank {len(axes) + 1} (batch, "
                             f"{', '.join(axes)}), got an input of shape (None, "
                             f"{', '.join(str(d) for d in input_shape)})")

    # -- running ----------------------------------------------------------
    def forward(self, x, training):
        raise NotImplementedError

    def compute_mask(self, x, mask):
        """The mask of this layer's output, given its input and the input's mask."""
        return mask if self.passes_mask else None

    def zero_grads(self):
        """Zero the gradients made so far (the others are made as zeros when used)."""
        for g in dict.values(self.grads):
            g.fill(0)

    # -- weights ----------------------------------------------------------
    def weight_names(self):
        """Keras order: trainable weights, then non-trainable ones."""
        return list(self.params) + list(self.buffers)

    def get_weights(self):
        return [self.params.get(n, self.buffers.get(n)) for n in self.weight_names()]

    def set_weights(self, values):
        names = self.weight_names()
        if len(values) != len(names):
            raise ConfigError(
                f"layer '{self.name}' has {len(names)} weights, got {len(values)}"
            )
        for n, v in zip(names, values):
            target = self.params[n] if n in self.params else self.buffers[n]
            if target.shape != tuple(v.shape):
                raise ConfigError(
                    f"layer '{self.name}' weight '{n}': expected shape "
                    f"{target.shape}, got {tuple(v.shape)}"
                )
            target[...] = v

    def count_params(self):
        trainable = sum(p.size for p in self.params.values()) if self.trainable else 0
        frozen = sum(b.size for b in self.buffers.values())
        if not self.trainable:
            frozen += sum(p.size for p in self.params.values())
        return trainable, frozen

    def cast(self, dtype):
        """Store every weight in ``dtype`` (float64 for gradient checks)."""
        self.dtype = dtype
        for d in (self.params, self.buffers, self.grads):
            for k in d:
                d[k] = d[k].astype(dtype)


class Grads(dict):
    """A layer's gradients, name → array like its weight in ``params``, each made (as
    zeros) when first used: a model that only predicts, and a frozen layer, never
    hold theirs (ResNet50: 100 MB). Listing them (``values``, ``items``, iteration)
    makes them all and follows the order of ``params``, as the optimizer pairs
    them."""

    def __init__(self, params):
        super().__init__()
        self.params = params

    def __missing__(self, name):
        weight = self.params[name]  # KeyError for a name that is no weight
        grad = self[name] = np.zeros(weight.shape, weight.dtype)
        return grad

    def __contains__(self, name):
        return name in self.params or dict.__contains__(self, name)

    def _names(self):
        return list(self.params) + [n for n in dict.keys(self) if n not in self.params]

    def __iter__(self):
        return iter(self._names())

    def __len__(self):
        return len(self._names())

    def keys(self):
        return self._names()

    def values(self):
        return [self[n] for n in self._names()]

    def items(self):
        return [(n, self[n]) for n in self._names()]


def snake_case(name):
    """Keras 2's layer-name rule (``to_snake_case``): Conv2D → conv2d,
    MaxPooling2D → max_pooling2d, SimpleRNN → simple_rnn. Default names must match
    Keras's so that Keras HDF5 weight files load by layer name."""
    intermediate = re.sub("(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", intermediate).lower()


class Namer:
    """Keras-style unique layer names: dense, dense_1, dense_2, ..."""

    def __init__(self):
        self.used = set()
        self.counts = {}

    def claim(self, name, where):
        if name in self.used:
            raise ConfigError(f"duplicate layer name '{name}'", where=where)
        self.used.add(name)
        return name

    def auto(self, cls_name):
        base = snake_case(cls_name)
        while True:
            n = self.counts.get(base, 0)
            self.counts[base] = n + 1
            name = base if n == 0 else f"{base}_{n}"
            if name not in self.used:
                self.used.add(name)
                return name
