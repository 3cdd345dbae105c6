"""Keras's preprocessing layers that are part of a model's computation: Rescaling,
Normalization, Resizing, CenterCrop, and the augmentation RandomFlip. (trainer's own data preprocessing —
rescale, standardize, ... in the config's ``data.preprocess`` — runs once on the data
instead; these layers exist so that Keras models holding them import and export as
they are.)"""

from typing import Literal

import numpy as np

from trainer import initializers
from trainer.distributed import shard
from trainer.engine.layer import Layer
from trainer.layers.reshaping import resize_images
from trainer.config.families import layers
from trainer.config.registry import PositiveInt

#: Keras's floor on the standard deviation it divides by (backend.epsilon())
EPSILON = 1e-7


@layers.register("Rescaling")
class Rescaling(Layer):
    """``y = x · scale + offset`` (tf.keras 2.6+): e.g. ``scale: 0.00392156862745098`` for
    pixels 0..255 → 0..1. No weights; a mask passes through.

    Args: scale (required), offset (0.0); each one value or one per channel of the
    last axis (Keras 2.10+, as EfficientNet's imagenet input scaling).
    """

    passes_mask = True

    def __init__(self, scale: float | list[float], offset: float | list[float] = 0.0,
                 name: str | None = None):
        super().__init__(name=name)
        self.scale = scale
        self.offset = offset

    def forward(self, x, training):
        scale = np.asarray(self.scale, x.dtype)
        y = (x * scale + np.asarray(self.offset, x.dtype)).astype(x.dtype, copy=False)
        return y, lambda dy: (dy * scale).astype(dy.dtype, copy=False)


@layers.register("Normalization")
class Normalization(Layer):
    """Keras's feature normalization: ``y = (x - mean) / max(sqrt(variance), 1e-7)`` per
    feature of the last axis; with ``invert`` the inverse, ``mean + x · max(sqrt(var),
    1e-7)``.

    Args:
        axis: -1, the features of the last axis: the only axis supported, written as
            an int or a one-item list; a positive axis (Keras counts the batch as 0)
            is accepted when it is the input's last one (``axis: [3]`` on images, as
            Keras's EfficientNet writes it), checked when the layer is built.
        mean, variance: one value or one per feature. Given, they are constants (no
            weights, as Keras). Left out, the layer holds Keras's non-trainable weights
            ``mean (C,)``, ``variance (C,)``, ``count ()``, which a Keras file fills in
            (Keras's ``adapt``); until then it is the identity (mean 0, variance 1).
            To fit them to the training data, use ``data.preprocess: [standardize]``.
        invert: false.
    """

    passes_mask = True

    def __init__(self, axis: int | list[int] = -1, mean: float | list[float] | None = None,
                 variance: float | list[float] | None = None, invert: bool = False,
                 name: str | None = None):
        super().__init__(name=name)
        one = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        if not isinstance(one, int) or isinstance(one, bool) or one == 0 or one < -1:
            raise self.error(f"only axis -1 (per feature of the last axis, or the last "
                             f"axis's number) is supported, got {axis!r}")
        if (mean is None) != (variance is None):
            raise self.error("give both mean and variance, or neither (then the layer "
                             "holds them as weights a Keras file fills in)")
        if variance is not None and np.any(np.asarray(variance, float) < 0):
            raise self.error(f"variance must not be negative, got {variance!r}")
        self.axis, self.mean, self.variance, self.invert = axis, mean, variance, invert

    def build(self, input_shape, rng):
        one = self.axis[0] if isinstance(self.axis, list) else self.axis
        if one not in (-1, len(input_shape)):
            raise self.error(f"only axis -1 (per feature of the last axis) is supported, "
                             f"got axis {self.axis!r} on inputs of rank "
                             f"{len(input_shape) + 1} (last axis {len(input_shape)})")
        features = input_shape[-1]
        if self.mean is None:
            zeros, ones = initializers.get("zeros"), initializers.get("ones")
            self.add_weight("mean", (features,), zeros, rng, trainable=False)
            self.add_weight("variance", (features,), ones, rng, trainable=False)
            self.add_weight("count", (), zeros, rng, trainable=False)
        else:
            for what, value in (("mean", self.mean), ("variance", self.variance)):
                size = np.size(value)
                if size not in (1, features):
                    raise self.error(f"{what} has {size} values for {features} features")
        return input_shape

    def _stats(self, dtype):
        if self.mean is None:
            mean, variance = self.buffers["mean"], self.buffers["variance"]
        else:
            mean, variance = np.asarray(self.mean, float), np.asarray(self.variance, float)
        std = np.maximum(np.sqrt(variance), EPSILON)
        return mean.astype(dtype), std.astype(dtype)

    def forward(self, x, training):
        mean, std = self._stats(x.dtype)
        if self.invert:
            return mean + x * std, lambda dy: dy * std
        return (x - mean) / std, lambda dy: dy / std


@layers.register("RandomFlip")
class RandomFlip(Layer):
    """Data augmentation inside the model (tf.keras 2.6+): while training, each image is
    flipped left-right and/or upside-down, each with probability 1/2; the identity at
    inference. Draws from the run's noise stream, so runs stay reproducible and resume
    exactly (the ``seed`` argument is accepted for Keras files and not used).

    Args: mode (horizontal_and_vertical, horizontal or vertical), seed.
    Shapes: ``(batch, rows, cols, channels)`` → the same.
    """

    def __init__(self, mode: Literal["horizontal", "vertical",
                                     "horizontal_and_vertical"] = "horizontal_and_vertical",
                 seed: int | None = None, name: str | None = None):
        super().__init__(name=name)
        if mode not in ("horizontal", "vertical", "horizontal_and_vertical"):
            raise self.error(f"mode must be horizontal, vertical or horizontal_and_vertical, "
                             f"got {mode!r}")
        self.mode, self.seed = mode, seed
        self.rng = np.random.default_rng(0)  # replaced by the model's noise stream

    def build(self, input_shape, rng):
        self.expect_rank(input_shape, ("rows", "cols", "channels"))
        return input_shape

    def forward(self, x, training):
        if not training:
            return x, lambda dy: dy
        n = len(x)
        flips = []  # (axis, which samples)
        if self.mode != "vertical":
            flips.append((2, shard.draw(self.rng.random, (n,)) < 0.5))
        if self.mode != "horizontal":
            flips.append((1, shard.draw(self.rng.random, (n,)) < 0.5))

        def apply(a):
            a = a.copy()
            for axis, which in flips:
                a[which] = np.flip(a[which], axis=axis)
            return a

        return apply(x), apply  # a flip is its own inverse (and its own gradient)


@layers.register("Resizing")
class Resizing(Layer):
    """Resizes images to (height, width) (tf.keras 2.6+), bilinear (default) or nearest,
    with TensorFlow's half-pixel centres and no antialiasing; inference and training
    alike. ``crop_to_aspect_ratio`` is not supported.

    Args: height, width, interpolation (bilinear, nearest), crop_to_aspect_ratio (false).
    Shapes: ``(batch, rows, cols, channels)`` → ``(batch, height, width, channels)``.
    """

    def __init__(self, height: PositiveInt, width: PositiveInt,
                 interpolation: Literal["bilinear", "nearest"] = "bilinear",
                 crop_to_aspect_ratio: bool = False, name: str | None = None):
        super().__init__(name=name)
        if interpolation not in ("bilinear", "nearest"):
            raise self.error(f"interpolation must be bilinear or nearest, got "
                             f"{interpolation!r}")
        if crop_to_aspect_ratio:
            raise self.error("crop_to_aspect_ratio is not supported; put a CenterCrop "
                             "before the Resizing")
        self.height, self.width = height, width
        self.interpolation, self.crop_to_aspect_ratio = interpolation, crop_to_aspect_ratio

    def build(self, input_shape, rng):
        self.expect_rank(input_shape, ("rows", "cols", "channels"))
        if None in input_shape[:2]:
            raise self.error(f"needs known image sizes, got input shape {input_shape}")
        return (self.height, self.width, input_shape[2])

    def forward(self, x, training):
        return resize_images(x, self.height, self.width, self.interpolation)


@layers.register("CenterCrop")
class CenterCrop(Layer):
    """Crops the central (height, width) of each image (tf.keras 2.6+); the extra
    rows or columns of an odd margin come off the bottom/right, as Keras.

    Args: height, width (at most the image's). Shapes: → (batch, height, width, C).
    """

    def __init__(self, height: PositiveInt, width: PositiveInt, name: str | None = None):
        super().__init__(name=name)
        self.height, self.width = height, width

    def build(self, input_shape, rng):
        self.expect_rank(input_shape, ("rows", "cols", "channels"))
        h, w = input_shape[:2]
        if (h is not None and h < self.height) or (w is not None and w < self.width):
            raise self.error(f"crop ({self.height}, {self.width}) is larger than the image "
                             f"({h}, {w}); Keras would resize first: put a Resizing before")
        return (self.height, self.width, input_shape[2])

    def forward(self, x, training):
        top, left = (x.shape[1] - self.height) // 2, (x.shape[2] - self.width) // 2
        keep = (slice(None), slice(top, top + self.height), slice(left, left + self.width))

        def backward(dy):
            dx = np.zeros(x.shape, dtype=dy.dtype)
            dx[keep] = dy
            return dx

        return x[keep], backward
