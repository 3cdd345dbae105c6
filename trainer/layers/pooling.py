"""Max and average pooling, 1-D and 2-D, and global pooling (channels_last).

Window pooling loops over the pool offsets with strided views of the (once) padded
input: a few vectorised passes, no im2col copy. 'same' padding is TensorFlow's: max
pooling ignores the padding, average pooling divides by the real cells only.
1-D pooling runs as 2-D pooling over a height-1 image.
"""

from typing import Literal

import numpy as np

from trainer.engine.kernels.conv import crop2d, pad2d, patches, plan2d
from trainer.engine.layer import Layer
from trainer.layers._window import check_data_format, check_padding, ntuple, window_output
from trainer.config.families import layers
from trainer.config.registry import IntOrPair


class Pooling(Layer):
    """Shared base. Args: pool_size (default 2), strides (default pool_size),
    padding (valid/same)."""

    rank = 2
    mode = "max"

    def __init__(self, pool_size: IntOrPair = 2, strides: IntOrPair | None = None,
                 padding: Literal["valid", "same"] = "valid",
                 data_format: Literal["channels_last"] | None = None,
                 name: str | None = None):
        super().__init__(name=name)
        self.pool_size = ntuple(pool_size, self.rank, "pool_size", self)
        self.strides = ntuple(strides if strides is not None else self.pool_size, self.rank,
                              "strides", self)
        check_padding(padding, self)
        self.padding = padding
        check_data_format(data_format, self)
        self.data_format = data_format

    def build(self, input_shape, rng):
        spatial = window_output(self, input_shape, self.rank, self.pool_size, self.strides,
                                (1,) * self.rank, self.padding, "pool_size")
        return (*spatial, input_shape[-1])

    def max_2x2(self):
        """Whether this layer is a 2-D max pool of 2×2 windows with stride 2 running
        its own forward: a convolution before it may take it into its kernel where no
        backward runs (Conv2D.pooled_step, which checks that it pads nothing)."""
        return (self.mode == "max" and self.rank == 2 and self.pool_size == (2, 2)
                and self.strides == (2, 2)
                and self.runs_own_forward(Pooling))

    def forward(self, x, training):
        x4 = x[:, None] if self.rank == 1 else x
        pool = (1,) * (2 - self.rank) + self.pool_size
        strides = (1,) * (2 - self.rank) + self.strides
        out_hw, pads = plan2d(x4.shape[1:3], pool, strides, (1, 1), self.padding)
        if self.mode == "max":
            y, back = max_pool(x4, pool, strides, out_hw, pads, training)
        else:
            y, back = avg_pool(x4, pool, strides, out_hw, pads)
        if self.rank == 1:
            return y[:, 0], lambda dy: back(dy[:, None])[:, 0]
        return y, back


def _offsets(pool, strides, out_hw):
    """(p, q, row slice, column slice) of every pool offset in the padded input."""
    (ph, pw), (sh, sw), (ho, wo) = pool, strides, out_hw
    for p in range(ph):
        for q in range(pw):
            yield p, q, slice(p, p + sh * (ho - 1) + 1, sh), slice(q, q + sw * (wo - 1) + 1, sw)


def max_pool(x, pool, strides, out_hw, pads, training=True):
    """Numba kernel for float inputs (trainer/engine/kernels/pool.py); NumPy otherwise.
    Not ``training``: no argmax is kept (see the kernel)."""
    if x.dtype.kind != "f":
        return max_pool_numpy(x, pool, strides, out_hw, pads)
    from trainer.engine.kernels import pool as kernels
    y, back = kernels.max_pool(pad2d(x, pads, -np.inf), pool, strides, out_hw, training)
    return y, lambda dy: crop2d(back(dy), pads)


def max_pool_numpy(x, pool, strides, out_hw, pads):
    """The NumPy version: a pass per pool offset (the reference of the Numba kernel)."""
    fill = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    xp = pad2d(x, pads, fill)
    view = patches(xp, pool, strides, (1, 1), out_hw)
    y = view[:, :, :, 0, 0, :].copy()
    for p, q, _, _ in _offsets(pool, strides, out_hw):
        if p or q:
            np.maximum(y, view[:, :, :, p, q, :], out=y)

    def backward(dy):
        # the gradient goes to the first maximum of each window, as TensorFlow
        dxp = np.zeros_like(xp)
        taken = np.zeros(y.shape, dtype=bool)
        for p, q, rows, cols in _offsets(pool, strides, out_hw):
            hit = view[:, :, :, p, q, :] == y
            hit &= ~taken
            taken |= hit
            dxp[:, rows, cols] += dy * hit
        return crop2d(dxp, pads)

    return y, backward


def avg_pool(x, pool, strides, out_hw, pads):
    xp = pad2d(x, pads)
    view = patches(xp, pool, strides, (1, 1), out_hw)
    y = view[:, :, :, 0, 0, :].copy()
    for p, q, _, _ in _offsets(pool, strides, out_hw):
        if p or q:
            y += view[:, :, :, p, q, :]
    ones = pad2d(np.ones((1, *x.shape[1:3], 1), x.dtype), pads)
    counts = patches(ones, pool, strides, (1, 1), out_hw).sum(axis=(3, 4))
    y /= counts

    def backward(dy):
        dxp = np.zeros_like(xp)
        share = dy / counts
        for _, _, rows, cols in _offsets(pool, strides, out_hw):
            dxp[:, rows, cols] += share
        return crop2d(dxp, pads)

    return y, backward


@layers.register("MaxPooling2D", "MaxPool2D")
class MaxPooling2D(Pooling):
    """Max over pool_size windows: (N, H, W, C) → (N, H', W', C)."""


@layers.register("AveragePooling2D", "AvgPool2D")
class AveragePooling2D(Pooling):
    """Mean over pool_size windows: (N, H, W, C) → (N, H', W', C)."""

    mode = "average"


@layers.register("MaxPooling1D", "MaxPool1D")
class MaxPooling1D(Pooling):
    """Max over pool_size steps: (N, steps, C) → (N, steps', C)."""

    rank = 1


@layers.register("AveragePooling1D", "AvgPool1D")
class AveragePooling1D(Pooling):
    """Mean over pool_size steps: (N, steps, C) → (N, steps', C)."""

    rank, mode = 1, "average"


class GlobalPooling(Layer):
    """Max or mean over every spatial axis: (N, ..., C) → (N, C) (or (N, 1.., C) with
    keepdims)."""

    rank = 2
    mode = "max"

    def __init__(self, data_format: Literal["channels_last"] | None = None,
                 keepdims: bool = False, name: str | None = None):
        super().__init__(name=name)
        check_data_format(data_format, self)
        self.data_format = data_format
        self.keepdims = keepdims

    def build(self, input_shape, rng):
        if len(input_shape) != self.rank + 1:
            raise self.error(f"expects inputs of rank {self.rank + 2}, got shape "
                             f"(None, {', '.join(map(str, input_shape))})")
        return (1,) * self.rank + (input_shape[-1],) if self.keepdims else (input_shape[-1],)

    def forward(self, x, training):
        n, c = x.shape[0], x.shape[-1]
        flat = x.reshape(n, int(np.prod(x.shape[1:-1])), c)  # (not -1: n may be 0)
        out_shape = (n,) + (1,) * self.rank + (c,) if self.keepdims else (n, c)
        if self.mode == "max":
            arg = flat.argmax(axis=1)[:, None]
            y = np.take_along_axis(flat, arg, axis=1)

            def backward(dy):
                dflat = np.zeros_like(flat)
                np.put_along_axis(dflat, arg, dy.reshape(n, 1, c), axis=1)
                return dflat.reshape(x.shape)
        else:
            y = flat.mean(axis=1)

            def backward(dy):
                share = dy.reshape(n, 1, c) / flat.shape[1]
                return np.broadcast_to(share, flat.shape).reshape(x.shape).copy()

        return y.reshape(out_shape), backward


@layers.register("GlobalMaxPooling2D", "GlobalMaxPool2D")
class GlobalMaxPooling2D(GlobalPooling):
    pass


@layers.register("GlobalAveragePooling2D", "GlobalAvgPool2D")
class GlobalAveragePooling2D(GlobalPooling):
    mode = "average"


@layers.register("GlobalMaxPooling1D", "GlobalMaxPool1D")
class GlobalMaxPooling1D(GlobalPooling):
    rank = 1


@layers.register("GlobalAveragePooling1D", "GlobalAvgPool1D")
class GlobalAveragePooling1D(GlobalPooling):
    """Mean over the steps: (N, steps, C) → (N, C). With a mask (Embedding(mask_zero),
    Masking) the mean over the unmasked steps only, as Keras: Σ x·m / Σ m. A sample with
    every step masked gives zeros (Keras divides 0 by 0: NaN)."""

    rank, mode = 1, "average"
    takes_mask = True

    def forward(self, x, training, mask=None):
        if mask is None:
            return super().forward(x, training)
        m = mask.astype(x.dtype)[:, :, None]  # (N, T, 1)
        count = np.maximum(m.sum(axis=1, keepdims=True), 1)  # (N, 1, 1)
        weights = m / count
        y = (x * weights).sum(axis=1, keepdims=self.keepdims)

        def backward(dy):
            return dy.reshape(len(x), 1, x.shape[-1]) * weights

        return y, backward


@layers.register("GlobalMaxPooling3D", "GlobalMaxPool3D")
class GlobalMaxPooling3D(GlobalPooling):
    rank = 3


@layers.register("GlobalAveragePooling3D", "GlobalAvgPool3D")
class GlobalAveragePooling3D(GlobalPooling):
    rank, mode = 3, "average"
