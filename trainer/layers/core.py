"""Core layers: Input, Dense, Activation, Dropout, Flatten."""

import math

import numpy as np

from trainer import activations as act
from trainer import initializers, regularizers
from trainer.engine.kernels import dense_chain, fused, parallel
from trainer.engine.layer import Layer
from trainer.distributed import shard
from trainer.config.families import layers
from trainer.config.registry import NonNegativeFloat, PositiveInt, Rate, arguments, component
from trainer.layers.argument_groups import KERNEL, LAYER


@layers.register("InputLayer", "Input")
class InputLayer(Layer):
    """Marks the input shape of a Sequential model; computes nothing.

    Args:
        shape: the shape of one sample (no batch axis), e.g. ``[28, 28, 1]``.
    """

    def __init__(self, shape: list[PositiveInt | None] | None = None,
                 name: str | None = None):
        super().__init__(name=name)
        self.shape = shape

    def forward(self, x, training):
        return x, lambda dy: dy


def kernel_settings(layer, kernel_initializer, bias_initializer, kernel_regularizer,
                    bias_regularizer):
    """The kernel/bias initializers and regularizers of a layer, resolved by name."""
    layer.kernel_initializer = initializers.get(kernel_initializer)
    layer.bias_initializer = initializers.get(bias_initializer)
    layer.kernel_regularizer = regularizers.get(kernel_regularizer)
    layer.bias_regularizer = regularizers.get(bias_regularizer)


@layers.register("Dense")
class Dense(Layer):
    """``y = activation(x @ kernel + bias)`` on the last axis.

    Args:
        units: output size (positive integer).
        activation: activation name or mapping; default linear.
        use_bias: add a bias vector (default true).
        kernel_initializer: default glorot_uniform. bias_initializer: default zeros.
        kernel_regularizer, bias_regularizer: optional l1/l2/l1_l2 penalties.
    Shapes: ``(..., in) → (..., units)``; weights ``kernel (in, units)``, ``bias (units,)``.
    """

    passes_mask = True  # elementwise over time steps: a mask_zero mask goes on
    fuses_activation = True  # a softmax output fuses with cross-entropy (Graph)

    @arguments(KERNEL, LAYER)
    def __init__(self, units: PositiveInt, activation: component("activation") = None,
                 use_bias: bool = True, **args):
        super().__init__(**LAYER.take(args))
        self.units = units
        self.activation = act.get(activation)
        self.use_bias = use_bias
        kernel_settings(self, **KERNEL.take(args))

    def build(self, input_shape, rng):
        if len(input_shape) < 1 or input_shape[-1] is None:
            raise self.error(f"needs a known last input dimension, got shape {input_shape}")
        self.add_weight("kernel", (input_shape[-1], self.units), self.kernel_initializer,
                        rng, self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer, rng,
                            self.bias_regularizer)
        return (*input_shape[:-1], self.units)

    #: a product is split over the engine's threads in parts of at least this many rows
    CHUNK_ROWS = 256

    def forward(self, x, training):
        W = self.params["kernel"]
        relu = getattr(self.activation, "registered_name", None) == "relu"
        bias = self.params["bias"] if self.use_bias else None
        if x.ndim == 2 and parallel.splits(x.shape[0], self.CHUNK_ROWS):
            # big: each worker thread multiplies its rows in one GEMM (one packing of
            # the kernel; 256-row pieces measured 6% slower), then adds the bias and
            # applies relu to them
            z = np.empty((x.shape[0], W.shape[1]), dtype=np.result_type(x, W))

            def rows(a, b):
                zc = z[a:b]
                np.matmul(x[a:b], W, out=zc)
                fused.bias_act(zc, bias, relu)

            parallel.run(rows, x.shape[0], min_items=self.CHUNK_ROWS)
            y = z if relu else self.activation.forward(z)
        else:
            # the units spelled out: -1 is ambiguous for a batch of zero rows
            z = (parallel.matmul(x, W) if x.ndim == 2 else
                 parallel.matmul(x.reshape(-1, x.shape[-1]), W).reshape(*x.shape[:-1],
                                                                         W.shape[1]))
            # relu in place: the backward only needs the sign of the output
            fused.bias_act(z, bias, relu)
            y = z if relu else self.activation.forward(z)
        input_grad = getattr(self, "needs_input_grad", True)

        def from_preactivation(dz):
            flat = x.ndim == 2
            x2 = x if flat else x.reshape(-1, x.shape[-1])
            dz2 = dz if flat else dz.reshape(-1, dz.shape[-1])
            self.grads["kernel"] += parallel.matmul(x2.T, dz2)
            if self.use_bias:
                self.grads["bias"] += dz2.sum(axis=0)
            if not input_grad:
                return None
            dx = parallel.matmul(dz2, W.T)
            return dx if flat else dx.reshape(*dz.shape[:-1], W.shape[0])

        def backward(dy):
            dz = fused.relu_backward(dy, y) if relu else self.activation.backward(z, y, dy)
            return from_preactivation(dz)

        # the model hands a fused softmax + cross-entropy gradient straight to dz
        backward.preactivation = from_preactivation
        return y, backward

    def inference_step(self, training):
        """This layer as a step of a dense chain where no backward runs
        (trainer/engine/fusion.py): the same numbers as ``forward``; None where
        ``forward`` is another (a subclass's, one replaced on the class or the layer)."""
        if not self.runs_own_forward(Dense):
            return None
        relu = getattr(self.activation, "registered_name", None) == "relu"
        return dense_chain.Dense(self.params["kernel"],
                                 self.params["bias"] if self.use_bias else None,
                                 relu, self.activation)


@layers.register("Activation")
class Activation(Layer):
    """Applies an activation by name: ``Activation: relu``."""

    fuses_activation = True  # a softmax output fuses with cross-entropy (Graph)
    passes_mask = True  # elementwise over time steps: a mask_zero mask goes on

    def __init__(self, activation: component("activation"), name: str | None = None):
        super().__init__(name=name)
        self.activation = act.get(activation)

    def forward(self, x, training):
        y = self.activation.forward(x)

        def backward(dy):
            return self.activation.backward(x, y, dy)

        backward.preactivation = lambda dz: dz  # fused softmax + cross-entropy
        return y, backward

    def inference_step(self, training):
        """This layer as a step of a dense chain (trainer/engine/fusion.py)."""
        if not self.runs_own_forward(Activation):
            return None
        return dense_chain.Activation(self.activation)


def check_rate(layer, rate):
    """``rate`` of a dropout-like layer, which must lie in [0, 1)."""
    if not 0 <= rate < 1:
        raise layer.error(f"rate must be in [0, 1), got {rate}")
    return rate


def draw_dtype(dtype):
    """float32 draws (24 random bits) for float32 data: half the cost of float64's."""
    return np.float32 if dtype == np.float32 else np.float64


def check_noise_shape(layer, noise_shape, input_shape):
    """A ConfigError, at build, for a ``noise_shape`` that cannot broadcast over the
    input (one entry per axis with the batch first, each null, 1 or the axis' size)."""
    ns = noise_shape
    if ns is not None and (len(ns) != len(input_shape) + 1 or any(
            d not in (None, 1, n) for d, n in zip(ns[1:], input_shape))):
        raise layer.error(f"noise_shape {ns} does not fit the input shape "
                          f"{(None, *input_shape)}: give one entry per axis, each "
                          f"null, 1 or the input's size")


def mask_shape(shape, noise_shape):
    """The shape of a dropout mask for inputs of ``shape``: ``noise_shape`` with the
    batch entry ignored (one mask per sample) and null meaning the input's size."""
    if noise_shape is None:
        return shape
    return (shape[0],) + tuple(shape[i + 1] if d is None else d
                               for i, d in enumerate(noise_shape[1:]))


@layers.register("Dropout")
class Dropout(Layer):
    """Zeroes a fraction ``rate`` of inputs while training and scales the rest by
    1 / (1 - rate) (inverted dropout, as Keras); the identity at inference.

    Args:
        rate: fraction to drop, in [0, 1).
        noise_shape: optional shape of the mask (1 where it is broadcast).
        seed: ignored; the run's seed drives every random stream.
    """

    passes_mask = True  # elementwise over time steps: a mask_zero mask goes on
    #: elements per piece of a big mask drawn on several threads
    PIECE = 1 << 17

    def __init__(self, rate: Rate, noise_shape: list[int | None] | None = None,
                 seed: int | None = None, name: str | None = None):
        super().__init__(name=name)
        self.rate = check_rate(self, rate)
        self.noise_shape = noise_shape
        self.seed = seed
        self.rng = np.random.default_rng(0)  # replaced by the model's noise stream

    def build(self, input_shape, rng):
        check_noise_shape(self, self.noise_shape, input_shape)
        return input_shape

    def forward(self, x, training):
        if not training or self.rate == 0:
            return x, lambda dy: dy
        shape = mask_shape(x.shape, self.noise_shape)
        keep = 1.0 - self.rate
        scale = x.dtype.type(1.0 / keep)
        draw = draw_dtype(x.dtype)
        # pieces of the global batch (the same as this batch in a single process)
        pieces = math.prod((shard.batch_size(shape[0]), *shape[1:])) // self.PIECE
        if pieces < 2 or shape != x.shape:
            # the global batch's mask (a sample's mask hangs on its position in the
            # global batch, not on the MPI rank holding it), this rank's rows of it
            mask = shard.draw(lambda s: self.rng.random(s, dtype=draw), shape)
            mask = (mask < keep).astype(x.dtype)
            mask *= scale
            return x * mask, lambda dy: dy * mask
        if shard.current() is not None and shard.batch_size(len(x)) != len(x):
            # split over ranks: the global batch's pieces, drawn whole, these rows kept
            mask = shard.draw(lambda s: self._big_mask(s, pieces, keep, draw), shape)
            mask = (mask * scale).astype(x.dtype)
            return x * mask, lambda dy: dy * mask
        # big: the batch in a fixed number of pieces (by size, not by thread count),
        # each drawn from its own generator seeded from the layer's stream, so the
        # pieces can be drawn on the engine's threads and stay reproducible
        seeds = self.rng.integers(0, 2 ** 63, size=pieces)
        bounds = parallel.split(len(x), pieces)
        mask = np.empty_like(x)
        y = np.empty_like(x)

        def draw_pieces(first, last):
            for k in range(first, last):
                a, b = bounds[k]
                gen = np.random.Generator(np.random.PCG64(int(seeds[k])))
                np.less(gen.random(mask[a:b].shape, dtype=draw), keep, out=mask[a:b],
                        casting="unsafe")
                mask[a:b] *= scale
                np.multiply(x[a:b], mask[a:b], out=y[a:b])

        parallel.run(draw_pieces, len(bounds), min_items=1)
        return y, lambda dy: dy * mask

    def inference_step(self, training):
        """The identity, as a step of a dense chain (trainer/engine/fusion.py), where
        this layer drops nothing: at inference (or a rate of 0)."""
        if not self.runs_own_forward(Dropout) or (training and self.rate != 0):
            return None
        return dense_chain.IDENTITY

    def _big_mask(self, shape, pieces, keep, draw):
        """The 0/1 keep mask the threaded path below draws for a batch of ``shape``
        (each piece from its own generator seeded from the layer's stream)."""
        seeds = self.rng.integers(0, 2 ** 63, size=pieces)
        mask = np.empty(shape, draw)
        for k, (a, b) in enumerate(parallel.split(shape[0], pieces)):
            gen = np.random.Generator(np.random.PCG64(int(seeds[k])))
            np.less(gen.random(mask[a:b].shape, dtype=draw), keep, out=mask[a:b],
                    casting="unsafe")
        return mask


@layers.register("ActivityRegularization")
class ActivityRegularization(Layer):
    """Identity that adds ``l1·Σ|x| + l2·Σx²`` of its input to the loss, divided by
    the batch size (Keras's activity regularization, as every layer's
    ``activity_regularizer`` argument does for its output).

    Args: l1 (0.0), l2 (0.0): the penalty factors.
    """

    passes_mask = True

    def __init__(self, l1: NonNegativeFloat = 0.0, l2: NonNegativeFloat = 0.0,
                 name: str | None = None):
        super().__init__(name=name, activity_regularizer={"l1_l2": {"l1": l1, "l2": l2}})
        self.l1, self.l2 = l1, l2

    def forward(self, x, training):
        return x, lambda dy: dy


@layers.register("Flatten")
class Flatten(Layer):
    """``(N, d1, d2, ...) → (N, d1*d2*...)``."""

    def __init__(self, name: str | None = None):
        super().__init__(name=name)

    def build(self, input_shape, rng):
        if any(d is None for d in input_shape):
            raise self.error(f"needs a fully known input shape, got {tuple(input_shape)}")
        return (int(np.prod(input_shape)),)

    def forward(self, x, training):
        shape = x.shape
        # the size spelled out: -1 is ambiguous for a batch of zero rows
        return x.reshape(shape[0], int(np.prod(shape[1:]))), lambda dy: dy.reshape(shape)
