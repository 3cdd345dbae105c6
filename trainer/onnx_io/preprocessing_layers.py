"""The preprocessing layers: Rescaling, Normalization (adapted or given statistics,
``invert`` too), RandomFlip (the identity at inference), Resizing and CenterCrop.

Resizing (and UpSampling2D's bilinear) is the layers' own computation: one constant
resize matrix per axis (TensorFlow's half-pixel centres), applied by an Einsum — the
same numbers, not an approximation by ONNX's Resize."""

import numpy as np

from trainer.layers import preprocessing as p
from trainer.layers.reshaping import resize_matrix
from trainer.onnx_io.registry import converts


@converts(p.Rescaling)
def rescaling(ctx, layer, xs, masks):
    y = ctx.op("Mul", [xs[0], ctx.scalar(layer.scale)])
    return [ctx.op("Add", [y, ctx.scalar(layer.offset)])]


@converts(p.Normalization)
def normalization(ctx, layer, xs, masks):
    mean, std = layer._stats(np.float32)
    if layer.invert:
        return [ctx.op("Add", [ctx.op("Mul", [xs[0], ctx.const(std, "std")]),
                               ctx.const(mean, "mean")])]
    return [ctx.op("Div", [ctx.op("Sub", [xs[0], ctx.const(mean, "mean")]),
                           ctx.const(std, "std")])]


@converts(p.RandomFlip)
def random_flip(ctx, layer, xs, masks):
    return [ctx.op("Identity", xs)]


def resize(ctx, x, in_hw, out_hw, interpolation):
    """Images (N, H, W, C) → (N, *out_hw, C) through two resize matrices."""
    A = resize_matrix(in_hw[0], out_hw[0], interpolation, np.float32)
    B = resize_matrix(in_hw[1], out_hw[1], interpolation, np.float32)
    return ctx.op("Einsum", [ctx.const(A, "resize_rows"), x, ctx.const(B, "resize_cols")],
                  equation="oh,nhwc,pw->nopc")


@converts(p.Resizing)
def resizing(ctx, layer, xs, masks):
    return [resize(ctx, xs[0], layer.input_shape[:2], (layer.height, layer.width),
                   layer.interpolation)]


@converts(p.CenterCrop)
def center_crop(ctx, layer, xs, masks):
    h, w = layer.input_shape[:2]
    if h is None or w is None:
        raise ctx.unsupported("an unknown image size")
    top, left = (h - layer.height) // 2, (w - layer.width) // 2
    return [ctx.op("Slice", [xs[0], ctx.ints([top, left], "starts"),
                             ctx.ints([top + layer.height, left + layer.width], "ends"),
                             ctx.ints([1, 2], "axes")])]
