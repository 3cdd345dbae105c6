"""Convolutions: Conv1D/2D/3D (strided, dilated, causal), DepthwiseConv1D/2D,
SeparableConv1D/2D, Conv1D/2D/3DTranspose.

The model's tensors are channels-last (Keras); ONNX's Conv is channels-first, so each
convolution sits between two Transposes (ONNX Runtime folds back-to-back pairs away).
TensorFlow's 'same' padding puts the odd pad after (bottom/right): written as explicit
``pads`` (``auto_pad=SAME_UPPER`` only where a spatial size is unknown)."""

import numpy as np

from trainer.engine.kernels.conv import out_size, transpose_out_size
from trainer.layers.conv import Conv1D, Conv2D
from trainer.layers.conv_transpose import Conv1DTranspose, Conv2DTranspose
from trainer.layers.separable import (DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D,
                                      SeparableConv2D)
from trainer.layers.volumetric import Conv3D, Conv3DTranspose
from trainer.onnx_io.context import channels_first
from trainer.onnx_io.registry import activation, converts


def window_pads(spatial, kernel, strides, dilation, padding):
    """ONNX ``pads`` (all begins, then all ends) of a window op, or None when a size is
    unknown and TensorFlow's 'same' must be left to ``auto_pad``."""
    begins, ends = [], []
    for n, k, s, d in zip(spatial, kernel, strides, dilation):
        if n is None and padding == "same" and s > 1:
            return None
        _, before, after = out_size(n if n is not None else k * d, k, s, d, padding)
        begins.append(before)
        ends.append(after)
    return begins + ends


def channels_first_op(ctx, x, rank, op_type, inputs=(), **attrs):
    """``op_type`` on channels-last ``x``: transpose, op, transpose back."""
    to_first, to_last = channels_first(rank)
    y = ctx.op(op_type, [ctx.transpose(x, to_first), *inputs], **attrs)
    return ctx.transpose(y, to_last)


def conv(ctx, x, layer, W, b, group=1, kernel=None, dilation=None):
    """ONNX Conv of channels-last ``x`` with ONNX weights ``W`` (F, C/group, *k)."""
    rank = layer.rank
    spatial = layer.input_shape[:rank]
    kernel = kernel or layer.kernel_size
    strides = layer.strides
    dilation = dilation or layer.dilation_rate
    pads = window_pads(spatial, kernel, strides, dilation, layer.padding)
    inputs = [ctx.const(W, "kernel")] + ([ctx.const(b, "bias")] if b is not None else [])
    return channels_first_op(ctx, x, rank, "Conv", inputs, group=group,
                             kernel_shape=list(kernel), strides=list(strides),
                             dilations=list(dilation), pads=pads,
                             auto_pad=None if pads is not None else "SAME_UPPER")


def _bias(layer):
    return layer.params["bias"] if layer.use_bias else None


@converts(Conv1D, Conv2D, Conv3D)
def convolution(ctx, layer, xs, masks):
    K = layer.params["kernel"]  # (*k, C, F) → (F, C, *k)
    W = K.transpose(layer.rank + 1, layer.rank, *range(layer.rank))
    return [activation(ctx, layer.activation, conv(ctx, xs[0], layer, W, _bias(layer)))]


def _depthwise_weights(layer):
    """depthwise_kernel (*k, C, dm) → grouped ONNX weights (C·dm, 1, *k): output
    channel c·dm + m reads input channel c, as Keras orders them."""
    K = layer.params["depthwise_kernel"]
    flat = K.reshape(*K.shape[:-2], -1)
    return np.moveaxis(flat, -1, 0)[:, None], K.shape[-2]


@converts(DepthwiseConv1D, DepthwiseConv2D)
def depthwise(ctx, layer, xs, masks):
    W, channels = _depthwise_weights(layer)
    y = conv(ctx, xs[0], layer, W, _bias(layer), group=channels)
    return [activation(ctx, layer.activation, y)]


@converts(SeparableConv1D, SeparableConv2D)
def separable(ctx, layer, xs, masks):
    W, channels = _depthwise_weights(layer)
    mid = conv(ctx, xs[0], layer, W, None, group=channels)
    P = layer.params["pointwise_kernel"].reshape(-1, layer.filters)
    y = ctx.matmul_add(mid, P, _bias(layer), "pointwise_kernel")
    return [activation(ctx, layer.activation, y)]


@converts(Conv1DTranspose, Conv2DTranspose, Conv3DTranspose)
def transposed(ctx, layer, xs, masks):
    """Keras's output: the full scatter ((n−1)·s + k_eff), zero-extended where Keras's
    size is larger (kernel < stride), cropped 'same'-wise: pads and output_padding."""
    rank = layer.rank
    K = layer.params["kernel"]  # (*k, F, C) → (C, F, *k)
    W = K.transpose(rank + 1, rank, *range(rank))
    begins, ends, extra = [], [], []
    for n, k, s, d in zip(layer.input_shape[:rank], layer.kernel_size, layer.strides,
                          layer.dilation_rate):
        if n is None:
            raise ctx.unsupported("an unknown spatial size")
        out, crop = transpose_out_size(n, k, s, d, layer.padding)
        full = (n - 1) * s + (k - 1) * d + 1
        grow = max(crop + out - full, 0)
        begins.append(crop)
        ends.append(full + grow - crop - out)
        extra.append(grow)
    inputs = [ctx.const(W, "kernel")] + ([ctx.const(_bias(layer), "bias")]
                                         if layer.use_bias else [])
    y = channels_first_op(ctx, xs[0], rank, "ConvTranspose", inputs,
                          kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
                          dilations=list(layer.dilation_rate), pads=begins + ends,
                          output_padding=extra)
    return [activation(ctx, layer.activation, y)]
