"""3-D (volumetric) layers on (batch, depth, rows, cols, channels): Conv3D,
Conv3DTranspose, MaxPooling3D, AveragePooling3D, ZeroPadding3D, Cropping3D,
UpSampling3D — Keras 2's arguments and weight layout, channels_last.
(GlobalMax/AveragePooling3D are with the other global poolings in pooling.py;
SpatialDropout3D in noise.py.)

Every window op walks the kernel offsets with strided views of the padded input (at
most kd·kh·kw slices, each a vectorised NumPy operation): Conv3D copies them into one
column matrix for a single GEMM (``parallel.matmul``: split over the engine's threads),
pooling reduces over them directly. Backward adds each offset's share back into the
padded gradient and crops (Conv3DTranspose scatters forward and gathers backward).
Simpler than the 2-D path (no per-thread chunks in cache): the column matrix of a
whole batch is held until backward.
"""

import itertools
from typing import Literal

import numpy as np

from trainer.engine.kernels import parallel
from trainer.engine.kernels.conv import out_size, transpose_out_size
from trainer.engine.layer import Layer
from trainer.layers._window import check_data_format, ntuple
from trainer.layers.conv import Conv
from trainer.layers.pooling import Pooling
from trainer.layers.reshaping import Pairs, edge_pairs
from trainer.config.families import layers
from trainer.config.registry import PositiveInt


class Windows:
    """The geometry of one 3-D window op on an input (N, D, H, W, C): output sizes,
    padding, and a strided view of the padded array per kernel offset."""

    def __init__(self, shape, kernel, strides, dilation, padding):
        sizes = [out_size(n, k, s, d, padding)
                 for n, k, s, d in zip(shape[1:4], kernel, strides, dilation)]
        self.out = tuple(size for size, _, _ in sizes)
        self.pads = ((0, 0), *[(a, b) for _, a, b in sizes], (0, 0))
        self.strides, self.shape = strides, shape
        self.offsets = [tuple(o * d for o, d in zip(offset, dilation))
                        for offset in itertools.product(*(range(k) for k in kernel))]

    def pad(self, x, value=0.0):
        return np.pad(x, self.pads, constant_values=value) if any(map(any, self.pads)) else x

    def view(self, xp, offset):
        """The input cells at ``offset`` of every window: (N, D', H', W', C)."""
        return xp[(slice(None), *(slice(o, o + s * (n - 1) + 1, s)
                                  for o, s, n in zip(offset, self.strides, self.out)))]

    def crop(self, xp):
        (_, _), (d0, d1), (h0, h1), (w0, w1), _ = self.pads
        return xp[:, d0:xp.shape[1] - d1, h0:xp.shape[2] - h1, w0:xp.shape[3] - w1]


@layers.register("Conv3D", "Convolution3D")
class Conv3D(Conv):
    """3-D convolution (N, D, H, W, C) → (N, D', H', W', filters). Args as Conv2D with
    three sizes each (kernel_size, strides, dilation_rate). Weights: ``kernel (kd, kh,
    kw, C, filters)``, ``bias (filters,)``."""

    rank = 3

    def forward(self, x, training):
        win = Windows(x.shape, self.kernel_size, self.strides, self.dilation_rate,
                      self.padding)
        xp = win.pad(x)
        cols = np.stack([win.view(xp, o) for o in win.offsets], axis=-2)  # (..., K, C)
        cols2 = cols.reshape(-1, cols.shape[-2] * cols.shape[-1])
        W2 = self.params["kernel"].reshape(cols2.shape[1], self.filters)
        z = parallel.matmul(cols2, W2)  # split over the engine's threads when big
        y, finish_back = self.finish(z.reshape(*cols.shape[:4], self.filters))

        def backward(dy):
            dz2 = finish_back(dy).reshape(-1, self.filters)
            self.grads["kernel"] += parallel.matmul(cols2.T, dz2).reshape(
                self.grads["kernel"].shape)
            dcols = parallel.matmul(dz2, W2.T).reshape(cols.shape)
            dxp = np.zeros(xp.shape, dtype=dy.dtype)
            for k, o in enumerate(win.offsets):
                win.view(dxp, o)[...] += dcols[..., k, :]
            return win.crop(dxp)

        return y, backward


@layers.register("Conv3DTranspose", "Convolution3DTranspose")
class Conv3DTranspose(Conv):
    """Transposed 3-D convolution (N, D, H, W, C) → (N, D', H', W', filters), each
    size' = (size - 1)·stride + kernel ('valid') or size·stride ('same'), as Keras.
    Args as Conv3D. Weights: ``kernel (kd, kh, kw, filters, C)``, ``bias (filters,)``.

    Each input cell scatters ``x · K[offset]ᵀ`` to its strided place per kernel offset
    into a full buffer, then the buffer is cropped ('same'); backward gathers back."""

    rank = 3

    def _plan(self, spatial):
        """Output sizes, the full scatter buffer's sizes, and the crop before."""
        sizes = [transpose_out_size(n, k, s, d, self.padding) for n, k, s, d in
                 zip(spatial, self.kernel_size, self.strides, self.dilation_rate)]
        full = [max((n - 1) * s + (k - 1) * d + 1, crop + out) for n, k, s, d, (out, crop)
                in zip(spatial, self.kernel_size, self.strides, self.dilation_rate, sizes)]
        return [out for out, _ in sizes], full, [crop for _, crop in sizes]

    def build(self, input_shape, rng):
        self.expect_rank(input_shape, ("depth", "rows", "cols", "channels"))
        if input_shape[-1] is None:
            raise self.error(f"needs a known channel dimension, got input shape {input_shape}")
        self.add_weight("kernel", (*self.kernel_size, self.filters, input_shape[-1]),
                        self.kernel_initializer, rng, self.kernel_regularizer)
        self.add_bias(rng, self.filters)
        out = self._plan([n or 1 for n in input_shape[:3]])[0]
        return (*(None if n is None else o for n, o in zip(input_shape[:3], out)),
                self.filters)

    def forward(self, x, training):
        out, full, crop = self._plan(x.shape[1:4])
        # the scatter is a convolution's window walk over the full buffer
        win = Windows((x.shape[0], *full, self.filters), self.kernel_size, self.strides,
                      self.dilation_rate, "valid")
        win.out = tuple(x.shape[1:4])
        K = self.params["kernel"].reshape(len(win.offsets), self.filters, x.shape[-1])
        x2 = x.reshape(-1, x.shape[-1])
        buf = np.zeros((x.shape[0], *full, self.filters), dtype=x.dtype)
        for k, o in enumerate(win.offsets):
            win.view(buf, o)[...] += (x2 @ K[k].T).reshape(*x.shape[:4], self.filters)
        keep = (slice(None), *(slice(c, c + n) for c, n in zip(crop, out)))
        y, finish_back = self.finish(np.ascontiguousarray(buf[keep]))

        def backward(dy):
            dbuf = np.zeros(buf.shape, dtype=dy.dtype)
            dbuf[keep] = finish_back(dy)
            dx2 = np.zeros(x2.shape, dtype=dy.dtype)
            dK = np.empty(K.shape, dtype=dy.dtype)
            for k, o in enumerate(win.offsets):
                d2 = win.view(dbuf, o).reshape(-1, self.filters)
                dx2 += d2 @ K[k]
                dK[k] = d2.T @ x2
            self.grads["kernel"] += dK.reshape(self.grads["kernel"].shape)
            return dx2.reshape(x.shape)

        return y, backward


class _Pooling3D(Pooling):
    """Max or mean over pool_size windows of (N, D, H, W, C): the arguments and shapes
    of 1-D/2-D ``Pooling`` (pool_size 2, strides = pool_size, valid/same; 'same'
    windows at the edges count only the input cells they cover, as Keras), with a
    3-D forward."""

    rank = 3

    def forward(self, x, training):
        win = Windows(x.shape, self.pool_size, self.strides, (1, 1, 1), self.padding)
        if self.mode == "max":
            xp = win.pad(x, -np.inf)
            y = win.view(xp, win.offsets[0]).copy()
            best = np.zeros(y.shape, np.int32)
            for k, o in enumerate(win.offsets[1:], 1):
                v = win.view(xp, o)
                better = v > y
                y[better] = v[better]
                best[better] = k

            def backward(dy):
                dxp = np.zeros(xp.shape, dtype=dy.dtype)
                for k, o in enumerate(win.offsets):
                    win.view(dxp, o)[...] += np.where(best == k, dy, 0)
                return win.crop(dxp)

            return y, backward
        xp = win.pad(x)
        ones = win.pad(np.ones((1, *x.shape[1:4], 1), x.dtype))
        total = sum(win.view(xp, o) for o in win.offsets)
        count = sum(win.view(ones, o) for o in win.offsets)  # cells inside the input
        y = total / count

        def backward(dy):
            share = dy / count
            dxp = np.zeros(xp.shape, dtype=dy.dtype)
            for o in win.offsets:
                win.view(dxp, o)[...] += share
            return win.crop(dxp)

        return y.astype(x.dtype, copy=False), backward


@layers.register("MaxPooling3D", "MaxPool3D")
class MaxPooling3D(_Pooling3D):
    pass


@layers.register("AveragePooling3D", "AvgPool3D")
class AveragePooling3D(_Pooling3D):
    mode = "average"


def _check_volume(layer, input_shape):
    layer.expect_rank(input_shape, ("depth", "rows", "cols", "channels"))


@layers.register("ZeroPadding3D")
class ZeroPadding3D(Layer):
    """Adds zeros around depth, rows and columns. padding: int, [depth, rows, cols]
    (symmetric) or three [before, after] pairs; default 1."""

    def __init__(self, padding: Pairs = 1,
                 data_format: Literal["channels_last"] | None = None, name: str | None = None):
        super().__init__(name=name)
        self.padding = edge_pairs(padding, self, "padding", rank=3)
        check_data_format(data_format, self)
        self.data_format = data_format

    def build(self, input_shape, rng):
        _check_volume(self, input_shape)
        return (*(None if n is None else n + a + b
                  for n, (a, b) in zip(input_shape[:3], self.padding)), input_shape[3])

    def forward(self, x, training):
        pads = ((0, 0), *map(tuple, self.padding), (0, 0))
        sizes = x.shape[1:4]
        return np.pad(x, pads), lambda dy: dy[(slice(None), *(
            slice(a, a + n) for (a, _), n in zip(self.padding, sizes)))]


@layers.register("Cropping3D")
class Cropping3D(Layer):
    """Removes cells at the edges of depth, rows and columns. cropping: int,
    [depth, rows, cols] or three [before, after] pairs; default 0."""

    def __init__(self, cropping: Pairs = 0,
                 data_format: Literal["channels_last"] | None = None, name: str | None = None):
        super().__init__(name=name)
        self.cropping = edge_pairs(cropping, self, "cropping", rank=3)
        check_data_format(data_format, self)
        self.data_format = data_format

    def build(self, input_shape, rng):
        _check_volume(self, input_shape)
        for n, (a, b), axis in zip(input_shape[:3], self.cropping, ("depth", "rows", "cols")):
            if n is not None and a + b >= n:
                raise self.error(f"cropping {a}+{b} {axis} leaves nothing of an input of "
                                 f"shape {tuple(input_shape)}")
        return (*(None if n is None else n - a - b
                  for n, (a, b) in zip(input_shape[:3], self.cropping)), input_shape[3])

    def forward(self, x, training):
        keep = (slice(None), *(slice(a, n - b) for (a, b), n in zip(self.cropping,
                                                                    x.shape[1:4])))

        def backward(dy):
            dx = np.zeros(x.shape, dtype=dy.dtype)
            dx[keep] = dy
            return dx

        return x[keep], backward


@layers.register("UpSampling3D")
class UpSampling3D(Layer):
    """Repeats depth, rows and columns ``size`` times. size: int or [depth, rows,
    cols], default 2."""

    def __init__(self, size: PositiveInt | list[PositiveInt] = 2,
                 data_format: Literal["channels_last"] | None = None,
                 name: str | None = None):
        super().__init__(name=name)
        self.size = ntuple(size, 3, "size", self)
        check_data_format(data_format, self)
        self.data_format = data_format

    def build(self, input_shape, rng):
        _check_volume(self, input_shape)
        return (*(None if n is None else n * s for n, s in zip(input_shape[:3], self.size)),
                input_shape[3])

    def forward(self, x, training):
        n, d, h, w, c = x.shape
        sd, sh, sw = self.size
        y = np.broadcast_to(x[:, :, None, :, None, :, None, :], (n, d, sd, h, sh, w, sw, c))
        return y.reshape(n, d * sd, h * sh, w * sw, c), lambda dy: dy.reshape(
            n, d, sd, h, sh, w, sw, c).sum(axis=(2, 4, 6))
