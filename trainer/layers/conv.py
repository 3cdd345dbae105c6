"""Conv1D and Conv2D (channels_last), as im2col + one GEMM.

Conv1D runs as a Conv2D over a height-1 image, so both share one code path.
Weights in Keras layout: ``kernel (kh, kw, in, filters)`` (Conv1D: ``(k, in, filters)``)
and ``bias (filters,)``.
"""

from typing import Literal

import numpy as np

from trainer import activations as act
from trainer import initializers, regularizers
from trainer.engine.kernels.conv import col2im, crop2d, im2col, pad2d, padded_shape, plan2d
from trainer.engine.kernels.workspace import Workspace
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
        self.workspace = Workspace()

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
        kernel, strides, dilation = self._geometry()
        x4 = self._as4d(x)
        out_hw, pads = plan2d(x4.shape[1:3], kernel, strides, dilation, self.padding)
        ws = self.workspace
        xp = x4 if not any(pads[0] + pads[1]) else pad2d(
            x4, pads, out=ws.take("xp", padded_shape(x4.shape, pads), x.dtype))
        W2 = self.params["kernel"].reshape(-1, self.filters)
        pointwise = kernel == (1, 1) and strides == (1, 1)
        if pointwise:
            cols = xp.reshape(-1, xp.shape[-1])
        else:
            n_rows = x4.shape[0] * out_hw[0] * out_hw[1]
            cols = im2col(xp, kernel, strides, dilation, out_hw,
                          out=ws.take("cols", (n_rows, W2.shape[0]), x.dtype))
        z = (cols @ W2).reshape(x4.shape[0], *out_hw, self.filters)
        y, finish_back = self.finish(z)
        input_grad = getattr(self, "needs_input_grad", True)

        def release():
            if xp is not x4:
                ws.give("xp", xp)
            if not pointwise:
                ws.give("cols", cols)

        if not training:
            release()

        def backward(dy):
            dz4 = finish_back(self._as4d(dy))
            dz = dz4.reshape(-1, self.filters)
            self.grads["kernel"] += (cols.T @ dz).reshape(self.grads["kernel"].shape)
            release()
            if not input_grad:
                return None  # the graph's input: nobody needs its gradient
            if pointwise:
                dx = (dz @ W2.T).reshape(x4.shape)
            elif strides == (1, 1):
                dx = self._input_grad_stride1(dz4, x4.shape, kernel, dilation, pads)
            else:
                dcols = dz @ W2.T
                dx = crop2d(col2im(dcols, xp.shape, kernel, strides, dilation, out_hw), pads)
            return dx[:, 0] if self.rank == 1 else dx

        return (y[:, 0] if self.rank == 1 else y), backward

    def _input_grad_stride1(self, dz4, x_shape, kernel, dilation, pads):
        """dx of a stride-1 convolution is itself a convolution: the output gradient,
        padded by (dilated kernel - 1 - forward pad), with the kernel flipped and its
        in/out axes swapped. im2col + GEMM again, instead of a col2im scatter."""
        ws = self.workspace
        (pt, pb), (pl, pr) = pads
        eh, ew = [(k - 1) * d for k, d in zip(kernel, dilation)]
        back_pads = ((eh - pt, eh - pb), (ew - pl, ew - pr))
        dyp = dz4 if not any(back_pads[0] + back_pads[1]) else pad2d(
            dz4, back_pads, out=ws.take("dyp", padded_shape(dz4.shape, back_pads), dz4.dtype))
        n, h, w, c = x_shape
        W = self.params["kernel"].reshape(*kernel, c, self.filters)
        W_flip = np.ascontiguousarray(W[::-1, ::-1].transpose(0, 1, 3, 2)).reshape(-1, c)
        cols = im2col(dyp, kernel, (1, 1), dilation, (h, w),
                      out=ws.take("dcols", (n * h * w, W_flip.shape[0]), dz4.dtype))
        dx = (cols @ W_flip).reshape(x_shape)
        ws.give("dcols", cols)
        if dyp is not dz4:
            ws.give("dyp", dyp)
        return dx


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
