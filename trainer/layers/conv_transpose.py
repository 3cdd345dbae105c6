"""Conv2DTranspose: the gradient of a Conv2D with respect to its input, as a layer.

Forward is one GEMM (input pixels × kernel) and a col2im scatter into the output;
backward is the im2col + GEMM of an ordinary convolution. Keras weight layout:
``kernel (kh, kw, filters, in)``, ``bias (filters,)``.
"""

from typing import Literal

import numpy as np

from trainer.engine.kernels.conv import col2im, im2col, transpose_out_size
from trainer.layers.conv import Conv
from trainer.registries import layers
from trainer.registry import IntOrPair, PositiveInt, component


@layers.register("Conv2DTranspose", "Convolution2DTranspose")
class Conv2DTranspose(Conv):
    """Transposed 2-D convolution (N, H, W, C) → (N, H', W', filters), with
    H' = (H - 1)·stride + kernel ('valid') or H·stride ('same'), as Keras.
    Args as Conv2D."""

    def __init__(self, filters: PositiveInt, kernel_size: IntOrPair,
                 strides: IntOrPair = 1, padding: Literal["valid", "same"] = "valid",
                 data_format: Literal["channels_last"] | None = None,
                 dilation_rate: IntOrPair = 1, activation: component("activation") = None,
                 use_bias: bool = True,
                 kernel_initializer: component("initializer") = "glorot_uniform",
                 bias_initializer: component("initializer") = "zeros",
                 kernel_regularizer: component("regularizer") = None,
                 bias_regularizer: component("regularizer") = None,
                 name: str | None = None, trainable: bool = True,
                 activity_regularizer: component("regularizer") = None):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, name, trainable,
                         activity_regularizer=activity_regularizer)

    def _plan(self, hw):
        """Output (Ho, Wo), the size of the full scatter buffer, and the top/left crop."""
        sizes = [transpose_out_size(hw[a], self.kernel_size[a], self.strides[a],
                                    self.dilation_rate[a], self.padding) for a in range(2)]
        out = tuple(s[0] for s in sizes)
        crop = tuple(s[1] for s in sizes)
        full = tuple(max((hw[a] - 1) * self.strides[a]
                         + (self.kernel_size[a] - 1) * self.dilation_rate[a] + 1,
                         crop[a] + out[a]) for a in range(2))
        return out, full, crop

    def build(self, input_shape, rng):
        if len(input_shape) != 3:
            raise self.error(f"expects inputs of rank 4 (batch, height, width, channels), "
                             f"got shape (None, {', '.join(map(str, input_shape))})")
        if input_shape[-1] is None:
            raise self.error(f"needs a known channel dimension, got input shape {input_shape}")
        self.add_weight("kernel", (*self.kernel_size, self.filters, input_shape[-1]),
                        self.kernel_initializer, rng, self.kernel_regularizer)
        self.add_bias(rng, self.filters)
        out = tuple(None if d is None else s for d, s in
                    zip(input_shape[:2], self._plan([d or 1 for d in input_shape[:2]])[0]))
        return (*out, self.filters)

    def forward(self, x, training):
        n, h, w, c = x.shape
        (ho, wo), (fh, fw), (ct, cl) = self._plan((h, w))
        K2 = self.params["kernel"].reshape(-1, c)  # (kh·kw·filters, in)
        x2 = x.reshape(-1, c)
        full_shape = (n, fh, fw, self.filters)
        full = col2im(x2 @ K2.T, full_shape, self.kernel_size, self.strides,
                      self.dilation_rate, (h, w))
        z = np.ascontiguousarray(full[:, ct:ct + ho, cl:cl + wo])
        y, finish_back = self.finish(z)

        def backward(dy):
            dz = finish_back(dy)
            dfull = np.zeros(full_shape, dtype=dz.dtype)
            dfull[:, ct:ct + ho, cl:cl + wo] = dz
            cols = im2col(dfull, self.kernel_size, self.strides, self.dilation_rate, (h, w))
            self.grads["kernel"] += (cols.T @ x2).reshape(self.grads["kernel"].shape)
            return (cols @ K2).reshape(x.shape)

        return y, backward
