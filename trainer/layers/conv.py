"""Conv1D and Conv2D (channels_last), as im2col + one GEMM.

Conv1D runs as a Conv2D over a height-1 image, so both share one code path.
Weights in Keras layout: ``kernel (kh, kw, in, filters)`` (Conv1D: ``(k, in, filters)``)
and ``bias (filters,)``.
"""

import math
import threading
from typing import Literal

import numpy as np

from trainer import activations as act
from trainer import initializers, regularizers
from trainer.engine.kernels import parallel
from trainer.engine.kernels.conv import col2im, crop2d, im2col, pad2d, padded_shape, plan2d
from trainer.engine.layer import Layer
from trainer.layers._window import check_data_format, check_padding, ntuple, window_output
from trainer.registries import layers
from trainer.registry import IntOrPair, PositiveInt, component


def fused_activation(activation, z):
    """Apply ``activation`` to a fresh pre-activation ``z``; relu/linear work in place
    (their backward only needs the sign of the output)."""
    name = getattr(activation, "registered_name", None)
    if name == "relu":
        np.maximum(z, 0, out=z)
        return z, lambda dy: dy * (z > 0)
    if name == "linear":
        return z, lambda dy: dy
    y = activation.forward(z)
    return y, lambda dy: activation.backward(z, y, dy)


class Conv(Layer):
    """Shared base of the convolution layers: arguments, weights, bias and activation.

    Args:
        filters: number of output channels.
        kernel_size: int or list of ``rank`` ints.
        strides: int or list (default 1). padding: ``valid`` (default) or ``same``
            (TensorFlow's: output = ceil(input / stride), odd pad at bottom/right).
        dilation_rate: int or list (default 1).
        activation: default linear. use_bias: default true.
        kernel_initializer (glorot_uniform), bias_initializer (zeros),
        kernel_regularizer, bias_regularizer: as in Dense.
    """

    rank = 2
    paddings = ("valid", "same")

    def __init__(self, filters: PositiveInt, kernel_size: IntOrPair,
                 strides: IntOrPair = 1, padding: Literal["valid", "same"] = "valid",
                 data_format: Literal["channels_last"] | None = None,
                 dilation_rate: IntOrPair = 1, activation: component("activation") = None,
                 use_bias: bool = True,
                 kernel_initializer: component("initializer") = "glorot_uniform",
                 bias_initializer: component("initializer") = "zeros",
                 kernel_regularizer: component("regularizer") = None,
                 bias_regularizer: component("regularizer") = None,
                 name: str | None = None, trainable: bool = True):
        super().__init__(name=name, trainable=trainable)
        self.filters = filters
        self.kernel_size = ntuple(kernel_size, self.rank, "kernel_size", self)
        self.strides = ntuple(strides, self.rank, "strides", self)
        check_padding(padding, self, self.paddings)
        self.padding = padding
        check_data_format(data_format, self)
        self.data_format = data_format
        self.dilation_rate = ntuple(dilation_rate, self.rank, "dilation_rate", self)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise self.error("strides > 1 together with dilation_rate > 1 is not supported "
                             "(as in Keras)")
        self.activation = act.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    # 2-D geometry of the op (Conv1D prepends a height-1 axis)
    def _geometry(self):
        if self.rank == 1:
            return ((1,) + self.kernel_size, (1,) + self.strides, (1,) + self.dilation_rate)
        return self.kernel_size, self.strides, self.dilation_rate

    def _as4d(self, x):
        return x[:, None] if self.rank == 1 else x

    def build(self, input_shape, rng):
        spatial = window_output(self, input_shape, self.rank, self.kernel_size, self.strides,
                                self.dilation_rate, self.padding, "kernel_size")
        channels = input_shape[-1]
        if channels is None:
            raise self.error(f"needs a known channel dimension, got input shape {input_shape}")
        self.add_weight("kernel", (*self.kernel_size, channels, self.filters),
                        self.kernel_initializer, rng, self.kernel_regularizer)
        self.add_bias(rng, self.filters)
        return (*spatial, self.filters)

    def add_bias(self, rng, units):
        if self.use_bias:
            self.add_weight("bias", (units,), self.bias_initializer, rng, self.bias_regularizer)

    def finish(self, z):
        """Bias and activation on a fresh (N, ..., F) pre-activation; returns
        (y, backward to dz with the bias gradient added)."""
        if self.use_bias:
            z += self.params["bias"]
        y, act_back = fused_activation(self.activation, z)

        def backward(dy):
            dz = act_back(dy)
            if self.use_bias:
                self.grads["bias"] += dz.reshape(-1, dz.shape[-1]).sum(axis=0)
            return dz

        return y, backward

    def forward(self, x, training):
        """im2col + GEMM, batch-parallel: each worker thread pads, copies the columns
        of a few samples at a time (a chunk that stays in cache), multiplies, adds the
        bias and applies relu in place — see trainer/engine/kernels/parallel.py.
        Nothing per chunk is kept: backward rebuilds a chunk's columns from the input
        (one cache-resident copy) instead of holding the whole column matrix."""
        kernel, strides, dilation = self._geometry()
        x4 = self._as4d(x)
        n = x4.shape[0]
        out_hw, pads = plan2d(x4.shape[1:3], kernel, strides, dilation, self.padding)
        W2 = self.params["kernel"].reshape(-1, self.filters)
        bias = self.params["bias"] if self.use_bias else None
        act_name = getattr(self.activation, "registered_name", None)
        inplace = act_name in ("relu", "linear")
        plan = ConvPlan(x4.shape, kernel, strides, dilation, pads, out_hw, self.filters)
        z = np.empty((n, *out_hw, self.filters), dtype=x4.dtype)

        def forward_chunks(start, stop):
            for a, b in plan.chunks(start, stop):
                zc = z[a:b].reshape(-1, self.filters)
                np.matmul(plan.columns(x4[a:b]), W2, out=zc)
                if bias is not None:
                    zc += bias
                if act_name == "relu":
                    np.maximum(zc, 0, out=zc)

        parallel.run(forward_chunks, n)
        y = z if inplace else self.activation.forward(z)
        input_grad = getattr(self, "needs_input_grad", True)

        def backward(dy):
            dy4 = self._as4d(dy)
            if act_name == "relu":
                mask_of = lambda a, b: dy4[a:b] * (y[a:b] > 0)  # noqa: E731
            elif act_name == "linear":
                mask_of = lambda a, b: dy4[a:b]  # noqa: E731
            else:
                dz_all = self._as4d(self.activation.backward(self._unas4d(z), self._unas4d(y),
                                                             dy))
                mask_of = lambda a, b: dz_all[a:b]  # noqa: E731
            dx = np.empty(x4.shape, dtype=x4.dtype) if input_grad else None
            back_plan = plan.input_grad_plan() if input_grad else None
            W_back = None
            if back_plan is not None:
                W_back = ConvPlan.flipped(self.params["kernel"].reshape(
                    *kernel, x4.shape[-1], self.filters))

            def backward_chunks(start, stop):
                dW = np.zeros_like(W2)
                db = np.zeros(self.filters, dtype=W2.dtype)
                for a, b in plan.chunks(start, stop):
                    dz = mask_of(a, b)
                    dz2 = dz.reshape(-1, self.filters)
                    if bias is not None:
                        db += dz2.sum(axis=0)
                    dW += plan.columns(x4[a:b]).T @ dz2
                    if dx is None:
                        continue
                    if plan.pointwise:
                        np.matmul(dz2, W2.T, out=dx[a:b].reshape(-1, x4.shape[-1]))
                    elif back_plan is not None:
                        np.matmul(back_plan.columns(dz), W_back,
                                  out=dx[a:b].reshape(-1, x4.shape[-1]))
                    else:
                        dx[a:b] = plan.scatter(dz2 @ W2.T, b - a)
                return dW, db

            parts = parallel.run(backward_chunks, n)
            self.grads["kernel"] += sum(p[0] for p in parts).reshape(self.grads["kernel"].shape)
            if bias is not None:
                self.grads["bias"] += sum(p[1] for p in parts)
            if dx is None:
                return None  # the graph's input: nobody needs its gradient
            return self._unas4d(dx)

        return self._unas4d(y), backward

    def _unas4d(self, a):
        return a[:, 0] if self.rank == 1 else a


class ConvPlan:
    """Geometry of one 2-D convolution call and its per-thread chunk buffers.

    Rows of a chunk are sized so that its column matrix takes about ``CHUNK_BYTES``
    (it then stays in the cache between the copy that fills it and the GEMM that
    reads it). Buffers are per thread and shared by every layer (the graph runs one
    layer at a time), grown on demand.
    """

    CHUNK_BYTES = 2 << 20

    def __init__(self, x_shape, kernel, strides, dilation, pads, out_hw, filters=None):
        self.x_shape = x_shape
        self.kernel, self.strides, self.dilation = kernel, strides, dilation
        self.pads, self.out_hw = pads, out_hw
        n, h, w, c = x_shape
        self.filters = filters
        self.pointwise = kernel == (1, 1) and strides == (1, 1) and not any(pads[0] + pads[1])
        self.k = kernel[0] * kernel[1] * c
        row_bytes = out_hw[0] * out_hw[1] * self.k * 4
        self.per_chunk = max(1, min(n, self.CHUNK_BYTES // max(row_bytes, 1)))

    def chunks(self, start, stop):
        for a in range(start, stop, self.per_chunk):
            yield a, min(a + self.per_chunk, stop)

    def columns(self, xs):
        """The (rows, kh·kw·C) column matrix of samples ``xs`` (a thread buffer)."""
        m = len(xs)
        if self.pointwise:
            return xs.reshape(-1, xs.shape[-1])
        xp = xs
        if any(self.pads[0] + self.pads[1]):
            xp = pad2d(xs, self.pads, out=_scratch("xp", padded_shape(xs.shape, self.pads),
                                                   xs.dtype))
        rows = m * self.out_hw[0] * self.out_hw[1]
        return im2col(xp, self.kernel, self.strides, self.dilation, self.out_hw,
                      out=_scratch("cols", (rows, self.k), xs.dtype))

    def scatter(self, dcols, m):
        """Input gradient of ``m`` samples from their column gradients (col2im)."""
        n, h, w, c = self.x_shape
        shape = padded_shape((m, h, w, c), self.pads)
        dxp = col2im(dcols, shape, self.kernel, self.strides, self.dilation, self.out_hw,
                     out=_scratch("dxp", shape, dcols.dtype))
        return crop2d(dxp, self.pads)

    def input_grad_plan(self):
        """dx of a stride-1 convolution is itself a convolution: the output gradient,
        padded by (dilated kernel - 1 - forward pad), with the kernel flipped and its
        in/out axes swapped — im2col + GEMM again instead of a col2im scatter. The
        plan of that convolution, or None (strided: backward scatters with col2im)."""
        if self.strides != (1, 1) or self.pointwise:
            return None
        n, h, w, _ = self.x_shape
        (pt, pb), (pl, pr) = self.pads
        eh, ew = [(k - 1) * d for k, d in zip(self.kernel, self.dilation)]
        back_pads = ((eh - pt, eh - pb), (ew - pl, ew - pr))
        return ConvPlan((n, *self.out_hw, self.filters), self.kernel, (1, 1), self.dilation,
                        back_pads, (h, w), filters=self.x_shape[-1])

    @staticmethod
    def flipped(kernel):
        """The input-gradient convolution's weights: (kh·kw·F, C)."""
        kh, kw, c, f = kernel.shape
        return np.ascontiguousarray(kernel[::-1, ::-1].transpose(0, 1, 3, 2)).reshape(-1, c)


_local = threading.local()


def _scratch(name, shape, dtype):
    """A per-thread scratch array of ``shape``, reusing (a prefix of) one buffer."""
    store = _local.__dict__.setdefault("buffers", {})
    need = math.prod(shape)
    buf = store.get((name, np.dtype(dtype)))
    if buf is None or buf.size < need:
        buf = np.empty(need, dtype)
        store[(name, np.dtype(dtype))] = buf
    return buf[:need].reshape(shape)


@layers.register("Conv2D", "Convolution2D")
class Conv2D(Conv):
    """2-D convolution over (N, H, W, C) → (N, H', W', filters). See ``Conv`` for args."""

    rank = 2


@layers.register("Conv1D", "Convolution1D")
class Conv1D(Conv):
    """1-D convolution over (N, steps, C) → (N, steps', filters); padding may also be
    ``causal`` (all padding on the left). See ``Conv`` for args."""

    rank = 1
    paddings = ("valid", "same", "causal")

    def __init__(self, filters: PositiveInt, kernel_size: IntOrPair,
                 strides: IntOrPair = 1, padding: Literal["valid", "same", "causal"] = "valid",
                 data_format: Literal["channels_last"] | None = None,
                 dilation_rate: IntOrPair = 1, activation: component("activation") = None,
                 use_bias: bool = True,
                 kernel_initializer: component("initializer") = "glorot_uniform",
                 bias_initializer: component("initializer") = "zeros",
                 kernel_regularizer: component("regularizer") = None,
                 bias_regularizer: component("regularizer") = None,
                 name: str | None = None, trainable: bool = True):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, name, trainable)
