"""DepthwiseConv2D/1D and SeparableConv2D/1D (channels_last). The 1-D layers run the
2-D code on a height-1 image, with Keras's 1-D weight shapes.

A depthwise convolution filters each input channel on its own with
``depth_multiplier`` kernels; output channel ``c * depth_multiplier + m`` (TensorFlow's
order). It loops over the kernel offsets with strided views (a few vectorised
multiply-adds each), since there is no GEMM to hand the work to.
"""

from typing import Literal

import numpy as np

from trainer import activations as act
from trainer import initializers, regularizers
from trainer.engine.kernels.conv import crop2d, pad2d, patches, plan2d
from trainer.layers._window import check_data_format, check_padding, ntuple, window_output
from trainer.layers.conv import Conv
from trainer.config.families import layers
from trainer.config.registry import IntOrPair, PositiveInt, component


def depthwise_forward(x, K, strides, dilation, padding):
    """x (N, H, W, C), K (kh, kw, C, M) → (y (N, Ho, Wo, C, M), backward(dy5) → (dx, dK))."""
    kh, kw, c, m = K.shape
    out_hw, pads = plan2d(x.shape[1:3], (kh, kw), strides, dilation, padding)
    xp = pad2d(x, pads)
    view = patches(xp, (kh, kw), strides, dilation, out_hw)
    y = np.zeros((x.shape[0], *out_hw, c, m), dtype=x.dtype)
    for p in range(kh):
        for q in range(kw):
            y += view[:, :, :, p, q, :, None] * K[p, q]

    def backward(dy):
        dK = np.empty_like(K)
        dxp = np.zeros_like(xp)
        ho, wo = out_hw
        sh, sw = strides
        for p in range(kh):
            for q in range(kw):
                dK[p, q] = np.einsum("nhwc,nhwcm->cm", view[:, :, :, p, q, :], dy)
                r, s = p * dilation[0], q * dilation[1]
                dxp[:, r:r + sh * (ho - 1) + 1:sh, s:s + sw * (wo - 1) + 1:sw] += (
                    dy * K[p, q]).sum(axis=-1)
        return crop2d(dxp, pads), dK

    return y, backward


class _Depthwise(Conv):
    def _init_depthwise(self, kernel_size, strides, padding, data_format, depth_multiplier,
                        dilation_rate, activation, use_bias, depthwise_initializer,
                        bias_initializer, depthwise_regularizer, bias_regularizer):
        self.kernel_size = ntuple(kernel_size, self.rank, "kernel_size", self)
        self.strides = ntuple(strides, self.rank, "strides", self)
        check_padding(padding, self)
        self.padding = padding
        check_data_format(data_format, self)
        self.data_format = data_format
        self.depth_multiplier = depth_multiplier
        self.dilation_rate = ntuple(dilation_rate, self.rank, "dilation_rate", self)
        self.activation = act.get(activation)
        self.use_bias = use_bias
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def _build_depthwise(self, input_shape, rng):
        spatial = window_output(self, input_shape, self.rank, self.kernel_size, self.strides,
                                self.dilation_rate, self.padding, "kernel_size")
        if input_shape[-1] is None:
            raise self.error(f"needs a known channel dimension, got input shape {input_shape}")
        self.add_weight("depthwise_kernel", (*self.kernel_size, input_shape[-1],
                                             self.depth_multiplier),
                        self.depthwise_initializer, rng, self.depthwise_regularizer)
        return spatial, input_shape[-1]

    def _depthwise(self, x):
        """(y5 (N, H', W', C, dm), backward(dy5) → dx, adding the kernel's gradient) on
        the layer's own input; 1-D layers go through a height-1 image."""
        _, strides, dilation = self._geometry()
        K = self.params["depthwise_kernel"]
        y5, back = depthwise_forward(self._as4d(x), K.reshape((1,) * (2 - self.rank) + K.shape),
                                     strides, dilation, self.padding)

        def backward(dy5):
            dx, dK = back(dy5)
            self.grads["depthwise_kernel"] += dK.reshape(K.shape)
            return self._unas4d(dx)

        return y5, backward

    def _spatial(self, values, y5, channels):
        """``values`` (any shape holding y5's N·H'·W' positions) → the layer's output shape
        (N, [H',] W', channels): a 1-D layer drops the height-1 axis."""
        return values.reshape(y5.shape[0], *y5.shape[3 - self.rank:3], channels)


@layers.register("DepthwiseConv2D")
class DepthwiseConv2D(_Depthwise):
    """Per-channel 2-D convolution: (N, H, W, C) → (N, H', W', C·depth_multiplier).

    Args: kernel_size, strides, padding, depth_multiplier (1), dilation_rate,
    activation, use_bias, depthwise_initializer (glorot_uniform), bias_initializer,
    depthwise_regularizer, bias_regularizer.
    Weights: ``depthwise_kernel (kh, kw, C, depth_multiplier)``, ``bias (C·dm,)``.
    """

    def __init__(self, kernel_size: IntOrPair, strides: IntOrPair = 1,
                 padding: Literal["valid", "same"] = "valid",
                 depth_multiplier: PositiveInt = 1,
                 data_format: Literal["channels_last"] | None = None,
                 dilation_rate: IntOrPair = 1, activation: component("activation") = None,
                 use_bias: bool = True,
                 depthwise_initializer: component("initializer") = "glorot_uniform",
                 bias_initializer: component("initializer") = "zeros",
                 depthwise_regularizer: component("regularizer") = None,
                 bias_regularizer: component("regularizer") = None,
                 name: str | None = None, trainable: bool = True,
                 activity_regularizer: component("regularizer") = None):
        super(Conv, self).__init__(name=name, trainable=trainable,
                                   activity_regularizer=activity_regularizer)
        self._init_depthwise(kernel_size, strides, padding, data_format, depth_multiplier,
                             dilation_rate, activation, use_bias, depthwise_initializer,
                             bias_initializer, depthwise_regularizer, bias_regularizer)

    def build(self, input_shape, rng):
        spatial, channels = self._build_depthwise(input_shape, rng)
        self.add_bias(rng, channels * self.depth_multiplier)
        return (*spatial, channels * self.depth_multiplier)

    def forward(self, x, training):
        y5, dw_back = self._depthwise(x)
        y, finish_back = self.finish(self._spatial(y5, y5, y5.shape[3] * y5.shape[4]))

        def backward(dy):
            return dw_back(finish_back(dy).reshape(y5.shape))

        return y, backward


@layers.register("SeparableConv2D", "SeparableConvolution2D")
class SeparableConv2D(_Depthwise):
    """A depthwise convolution followed by a 1×1 (pointwise) convolution to ``filters``.

    Args: filters, kernel_size, strides, padding, depth_multiplier (1), dilation_rate,
    activation, use_bias, depthwise_initializer, pointwise_initializer (glorot_uniform),
    bias_initializer, depthwise_regularizer, pointwise_regularizer, bias_regularizer.
    Weights (Keras order): ``depthwise_kernel (kh, kw, C, dm)``,
    ``pointwise_kernel (1, 1, C·dm, filters)``, ``bias (filters,)``.
    """

    def __init__(self, filters: PositiveInt, kernel_size: IntOrPair, strides: IntOrPair = 1,
                 padding: Literal["valid", "same"] = "valid",
                 data_format: Literal["channels_last"] | None = None,
                 dilation_rate: IntOrPair = 1, depth_multiplier: PositiveInt = 1,
                 activation: component("activation") = None, use_bias: bool = True,
                 depthwise_initializer: component("initializer") = "glorot_uniform",
                 pointwise_initializer: component("initializer") = "glorot_uniform",
                 bias_initializer: component("initializer") = "zeros",
                 depthwise_regularizer: component("regularizer") = None,
                 pointwise_regularizer: component("regularizer") = None,
                 bias_regularizer: component("regularizer") = None,
                 name: str | None = None, trainable: bool = True,
                 activity_regularizer: component("regularizer") = None):
        super(Conv, self).__init__(name=name, trainable=trainable,
                                   activity_regularizer=activity_regularizer)
        self.filters = filters
        self._init_depthwise(kernel_size, strides, padding, data_format, depth_multiplier,
                             dilation_rate, activation, use_bias, depthwise_initializer,
                             bias_initializer, depthwise_regularizer, bias_regularizer)
        self.pointwise_initializer = initializers.get(pointwise_initializer)
        self.pointwise_regularizer = regularizers.get(pointwise_regularizer)

    def build(self, input_shape, rng):
        spatial, channels = self._build_depthwise(input_shape, rng)
        self.add_weight("pointwise_kernel", (1,) * self.rank + (channels * self.depth_multiplier,
                                                                self.filters),
                        self.pointwise_initializer, rng, self.pointwise_regularizer)
        self.add_bias(rng, self.filters)
        return (*spatial, self.filters)

    def forward(self, x, training):
        y5, dw_back = self._depthwise(x)
        mid = y5.reshape(-1, y5.shape[3] * y5.shape[4])  # (N·H'·W', C·dm)
        P = self.params["pointwise_kernel"].reshape(mid.shape[1], self.filters)
        y, finish_back = self.finish(self._spatial(mid @ P, y5, self.filters))

        def backward(dy):
            dz = finish_back(dy).reshape(-1, self.filters)
            self.grads["pointwise_kernel"] += (mid.T @ dz).reshape(
                self.grads["pointwise_kernel"].shape)
            return dw_back((dz @ P.T).reshape(y5.shape))

        return y, backward


@layers.register("DepthwiseConv1D")
class DepthwiseConv1D(DepthwiseConv2D):
    """Per-channel 1-D convolution (tf.keras 2.9+): (N, steps, C) → (N, steps',
    C·depth_multiplier). Args as DepthwiseConv2D with one size each.
    Weights: ``depthwise_kernel (k, C, depth_multiplier)``, ``bias (C·dm,)``."""

    rank = 1


@layers.register("SeparableConv1D", "SeparableConvolution1D")
class SeparableConv1D(SeparableConv2D):
    """A depthwise 1-D convolution, then a pointwise one to ``filters``: (N, steps, C) →
    (N, steps', filters). Args as SeparableConv2D with one size each.
    Weights: ``depthwise_kernel (k, C, dm)``, ``pointwise_kernel (1, C·dm, filters)``,
    ``bias (filters,)``."""

    rank = 1
