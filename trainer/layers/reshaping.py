"""Reshaping layers: Reshape, Permute, RepeatVector, ZeroPadding2D, Cropping2D,
UpSampling2D (channels_last)."""

from typing import Literal

import numpy as np

from trainer.engine.layer import Layer
from trainer.layers._window import SPATIAL, check_data_format
from trainer.config.families import layers
from trainer.config.registry import NonNegativeInt, PositiveInt

Pairs = NonNegativeInt | list[NonNegativeInt] | list[list[NonNegativeInt]]


def edge_pairs(value, layer, what, rank=2):
    """Amounts at both edges of each of ``rank`` spatial axes, Keras's forms: 1 → [[1, 1],
    [1, 1]]; [1, 2] → [[1, 1], [2, 2]]; [[1, 2], [3, 4]] as written (rank 3 likewise)."""
    if isinstance(value, int):
        value = [value] * rank
    if len(value) == rank and all(isinstance(v, int) for v in value):
        value = [[v, v] for v in value]
    ok = (len(value) == rank and all(isinstance(v, (list, tuple)) and len(v) == 2 and
                                     all(isinstance(i, int) and i >= 0 for i in v)
                                     for v in value))
    if not ok:
        axes = SPATIAL[rank]
        raise layer.error(f"{what} must be an int, [{', '.join(axes)}] or {rank} [before, "
                          f"after] pairs (one per axis) of non-negative ints, got {value!r}")
    return [list(v) for v in value]


def _check_image(layer, input_shape):
    layer.expect_rank(input_shape, ("rows", "cols", "channels"))


@layers.register("Reshape")
class Reshape(Layer):
    """(N, ...) → (N, *target_shape); one entry may be -1 (inferred)."""

    def __init__(self, target_shape: list[int], name: str | None = None):
        super().__init__(name=name)
        self.target_shape = tuple(target_shape)
        if sum(d == -1 for d in self.target_shape) > 1 or any(
                d == 0 or d < -1 for d in self.target_shape):
            raise self.error(f"target_shape may hold positive sizes and at most one -1, "
                             f"got {list(target_shape)}")

    def build(self, input_shape, rng):
        if any(d is None for d in input_shape):
            raise self.error(f"needs a fully known input shape, got {tuple(input_shape)}")
        size = int(np.prod(input_shape))
        known = int(np.prod([d for d in self.target_shape if d != -1]))
        if -1 in self.target_shape:
            if size % known:
                raise self.error(f"cannot reshape an input of shape {tuple(input_shape)} "
                                 f"({size} values) to {list(self.target_shape)}: {size} is "
                                 f"not a multiple of {known}")
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if size != known:
            raise self.error(f"cannot reshape an input of shape {tuple(input_shape)} ({size} "
                             f"values) to {list(self.target_shape)} ({known} values)")
        return self.target_shape

    def forward(self, x, training):
        return x.reshape(x.shape[0], *self.output_shape), lambda dy: dy.reshape(x.shape)


@layers.register("Permute")
class Permute(Layer):
    """Permutes the non-batch axes; ``dims`` are 1-based: [2, 1] swaps the first two."""

    def __init__(self, dims: list[PositiveInt], name: str | None = None):
        super().__init__(name=name)
        self.dims = tuple(dims)
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise self.error(f"dims must be a permutation of 1..{len(self.dims)}, "
                             f"got {list(dims)}")

    def build(self, input_shape, rng):
        if len(input_shape) != len(self.dims):
            raise self.error(f"dims {list(self.dims)} has {len(self.dims)} entries but the "
                             f"input shape {tuple(input_shape)} has {len(input_shape)} axes")
        return tuple(input_shape[d - 1] for d in self.dims)

    def forward(self, x, training):
        order = (0, *self.dims)
        inverse = tuple(np.argsort(order))
        return x.transpose(order), lambda dy: dy.transpose(inverse)


@layers.register("RepeatVector")
class RepeatVector(Layer):
    """(N, features) → (N, n, features)."""

    def __init__(self, n: PositiveInt, name: str | None = None):
        super().__init__(name=name)
        self.n = n

    def build(self, input_shape, rng):
        if len(input_shape) != 1:
            raise self.error(f"expects inputs of rank 2 (batch, features), got shape "
                             f"(None, {', '.join(map(str, input_shape))})")
        return (self.n, input_shape[0])

    def forward(self, x, training):
        y = np.repeat(x[:, None, :], self.n, axis=1)
        return y, lambda dy: dy.sum(axis=1)


@layers.register("ZeroPadding2D")
class ZeroPadding2D(Layer):
    """Adds rows and columns of zeros. padding: int, [rows, cols] (symmetric) or
    [[top, bottom], [left, right]]; default 1."""

    def __init__(self, padding: Pairs = 1, data_format: Literal["channels_last"] | None = None,
                 name: str | None = None):
        super().__init__(name=name)
        self.padding = edge_pairs(padding, self, "padding")
        check_data_format(data_format, self)
        self.data_format = data_format

    def build(self, input_shape, rng):
        _check_image(self, input_shape)
        (t, b), (l, r) = self.padding
        h, w, c = input_shape
        return (None if h is None else h + t + b, None if w is None else w + l + r, c)

    def forward(self, x, training):
        (t, b), (l, r) = self.padding
        y = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
        h, w = x.shape[1:3]
        return y, lambda dy: dy[:, t:t + h, l:l + w]


@layers.register("Cropping2D")
class Cropping2D(Layer):
    """Removes rows and columns at the edges. cropping: int, [rows, cols] or
    [[top, bottom], [left, right]]; default 0."""

    def __init__(self, cropping: Pairs = 0,
                 data_format: Literal["channels_last"] | None = None, name: str | None = None):
        super().__init__(name=name)
        self.cropping = edge_pairs(cropping, self, "cropping")
        check_data_format(data_format, self)
        self.data_format = data_format

    def build(self, input_shape, rng):
        _check_image(self, input_shape)
        (t, b), (l, r) = self.cropping
        h, w, c = input_shape
        for size, (a, z), axis in ((h, (t, b), "rows"), (w, (l, r), "cols")):
            if size is not None and a + z >= size:
                raise self.error(f"cropping {a}+{z} {axis} leaves nothing of an input of "
                                 f"shape {tuple(input_shape)}")
        return (None if h is None else h - t - b, None if w is None else w - l - r, c)

    def forward(self, x, training):
        (t, b), (l, r) = self.cropping
        h, w = x.shape[1:3]
        y = x[:, t:h - b, l:w - r]

        def backward(dy):
            dx = np.zeros_like(x, dtype=dy.dtype)
            dx[:, t:h - b, l:w - r] = dy
            return dx

        return y, backward


def resize_matrix(n_in, n_out, interpolation, dtype):
    """(n_out, n_in) weights resizing one axis, TensorFlow's half-pixel centres:
    bilinear reads source position (i + 0.5)·n_in/n_out - 0.5 (clamped at 0), nearest
    the cell floor((i + 0.5)·n_in/n_out)."""
    out = np.arange(n_out)
    A = np.zeros((n_out, n_in), dtype)
    if interpolation == "nearest":
        A[out, np.minimum(np.floor((out + 0.5) * n_in / n_out).astype(int), n_in - 1)] = 1
        return A
    src = np.maximum((out + 0.5) * n_in / n_out - 0.5, 0.0)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    np.add.at(A, (out, lo), 1 - frac)
    np.add.at(A, (out, hi), frac)
    return A


def resize_images(x, height, width, interpolation):
    """(y, backward) of images (N, H, W, C) resized to (height, width): one resize
    matrix per axis (``resize_matrix``), applied together; backward the transposes."""
    A = resize_matrix(x.shape[1], height, interpolation, x.dtype)
    B = resize_matrix(x.shape[2], width, interpolation, x.dtype)
    y = np.einsum("oh,nhwc,pw->nopc", A, x, B, optimize=True)
    return y, lambda dy: np.einsum("oh,nopc,pw->nhwc", A, dy, B, optimize=True)


@layers.register("UpSampling2D")
class UpSampling2D(Layer):
    """Repeats rows and columns ``size`` times (nearest), or interpolates (bilinear,
    TensorFlow's half-pixel centres). size: int or [rows, cols], default 2."""

    def __init__(self, size: PositiveInt | list[PositiveInt] = 2,
                 data_format: Literal["channels_last"] | None = None,
                 interpolation: Literal["nearest", "bilinear"] = "nearest",
                 name: str | None = None):
        super().__init__(name=name)
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        if len(self.size) != 2:
            raise self.error(f"size must be an int or [rows, cols], got {size!r}")
        check_data_format(data_format, self)
        self.data_format = data_format
        if interpolation not in ("nearest", "bilinear"):
            raise self.error(f"interpolation must be nearest or bilinear, got {interpolation!r}")
        self.interpolation = interpolation

    def build(self, input_shape, rng):
        _check_image(self, input_shape)
        h, w, c = input_shape
        sh, sw = self.size
        return (None if h is None else h * sh, None if w is None else w * sw, c)

    def forward(self, x, training):
        n, h, w, c = x.shape
        sh, sw = self.size
        if self.interpolation == "nearest":
            y = np.broadcast_to(x[:, :, None, :, None, :], (n, h, sh, w, sw, c))
            return y.reshape(n, h * sh, w * sw, c), lambda dy: dy.reshape(
                n, h, sh, w, sw, c).sum(axis=(2, 4))
        return resize_images(x, h * sh, w * sw, "bilinear")
