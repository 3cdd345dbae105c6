"""Conv2DTranspose and Conv1DTranspose: the gradient of a convolution with respect to
its input, as a layer.

Forward is one GEMM (input pixels × kernel) and a col2im scatter into the output;
backward is the im2col + GEMM of an ordinary convolution. Keras weight layout:
``kernel (kh, kw, filters, in)`` (1-D: ``(k, filters, in)``), ``bias (filters,)``. The
1-D layer runs the 2-D code on a height-1 image.
"""

import numpy as np

from trainer.engine.kernels.conv import col2im, im2col, transpose_out_size
from trainer.layers.conv import Conv
from trainer.config.families import layers


@layers.register("Conv2DTranspose", "Convolution2DTranspose")
class Conv2DTranspose(Conv):
    """Transposed 2-D convolution (N, H, W, C) → (N, H', W', filters), with
    H' = (H - 1)·stride + kernel ('valid') or H·stride ('same'), as Keras.
    Args as Conv2D."""

    def _plan(self, hw):
        """Output (Ho, Wo), the size of the full scatter buffer, and the top/left crop."""
        kernel, strides, dilation = self._geometry()
        sizes = [transpose_out_size(hw[a], kernel[a], strides[a], dilation[a], self.padding)
                 for a in range(2)]
        out = tuple(s[0] for s in sizes)
        crop = tuple(s[1] for s in sizes)
        full = tuple(max((hw[a] - 1) * strides[a] + (kernel[a] - 1) * dilation[a] + 1,
                         crop[a] + out[a]) for a in range(2))
        return out, full, crop

    def build(self, input_shape, rng):
        if len(input_shape) != self.rank + 1:
            axes = "height, width" if self.rank == 2 else "steps"
            raise self.error(f"expects inputs of rank {self.rank + 2} (batch, {axes}, "
                             f"channels), got shape (None, {', '.join(map(str, input_shape))})")
        if input_shape[-1] is None:
            raise self.error(f"needs a known channel dimension, got input shape {input_shape}")
        self.add_weight("kernel", (*self.kernel_size, self.filters, input_shape[-1]),
                        self.kernel_initializer, rng, self.kernel_regularizer)
        self.add_bias(rng, self.filters)
        spatial = ((1,) if self.rank == 1 else ()) + tuple(input_shape[:-1])
        out = tuple(None if d is None else s for d, s in
                    zip(spatial, self._plan([d or 1 for d in spatial])[0]))
        return (*out[2 - self.rank:], self.filters)

    def forward(self, x, training):
        x4 = self._as4d(x)
        n, h, w, c = x4.shape
        kernel, strides, dilation = self._geometry()
        (ho, wo), (fh, fw), (ct, cl) = self._plan((h, w))
        K2 = self.params["kernel"].reshape(-1, c)  # (kh·kw·filters, in)
        x2 = x4.reshape(-1, c)
        full_shape = (n, fh, fw, self.filters)
        full = col2im(x2 @ K2.T, full_shape, kernel, strides, dilation, (h, w))
        z = np.ascontiguousarray(full[:, ct:ct + ho, cl:cl + wo])
        y, finish_back = self.finish(self._unas4d(z))

        def backward(dy):
            dz = self._as4d(finish_back(dy))
            dfull = np.zeros(full_shape, dtype=dz.dtype)
            dfull[:, ct:ct + ho, cl:cl + wo] = dz
            cols = im2col(dfull, kernel, strides, dilation, (h, w))
            self.grads["kernel"] += (cols.T @ x2).reshape(self.grads["kernel"].shape)
            return (cols @ K2).reshape(x.shape)

        return y, backward


@layers.register("Conv1DTranspose", "Convolution1DTranspose")
class Conv1DTranspose(Conv2DTranspose):
    """Transposed 1-D convolution (N, steps, C) → (N, steps', filters) (tf.keras 2.3+),
    steps' = (steps - 1)·stride + kernel ('valid') or steps·stride ('same'). Args as
    Conv1D (no 'causal'). Weights: ``kernel (k, filters, in)``, ``bias (filters,)``."""

    rank = 1
