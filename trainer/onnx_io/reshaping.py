"""Reshaping layers: Reshape, Permute, RepeatVector, ZeroPadding1D/2D/3D,
Cropping1D/2D/3D, UpSampling1D/2D/3D (nearest; UpSampling2D bilinear too), Masking."""

from trainer.layers import reshaping as r
from trainer.layers import sequence_shaping as s
from trainer.layers import volumetric as v
from trainer.onnx_io.registry import converts


@converts(r.Reshape)
def reshape(ctx, layer, xs, masks):
    return [ctx.reshape(xs[0], [0, *layer.output_shape])]


@converts(r.Permute)
def permute(ctx, layer, xs, masks):
    return [ctx.transpose(xs[0], [0, *layer.dims])]


@converts(r.RepeatVector)
def repeat(ctx, layer, xs, masks):
    x = ctx.op("Unsqueeze", [xs[0], ctx.ints([1], "axes")])
    return [ctx.op("Tile", [x, ctx.ints([1, layer.n, 1], "repeats")])]


def _edges(layer, attr):
    """((before, after), ...) per spatial axis, whatever form the layer keeps."""
    value = getattr(layer, attr)
    return [tuple(value)] if isinstance(value[0], int) else [tuple(p) for p in value]


@converts(s.ZeroPadding1D, r.ZeroPadding2D, v.ZeroPadding3D)
def zero_pad(ctx, layer, xs, masks):
    edges = _edges(layer, "padding")
    pads = [0, *(a for a, _ in edges), 0, 0, *(b for _, b in edges), 0]
    return [ctx.op("Pad", [xs[0], ctx.ints(pads, "pads")], mode="constant")]


@converts(s.Cropping1D, r.Cropping2D, v.Cropping3D)
def crop(ctx, layer, xs, masks):
    edges = _edges(layer, "cropping")
    starts = [a for a, _ in edges]
    ends = [-b if b else 2 ** 62 for _, b in edges]
    axes = list(range(1, len(edges) + 1))
    return [ctx.op("Slice", [xs[0], ctx.ints(starts, "starts"), ctx.ints(ends, "ends"),
                             ctx.ints(axes, "axes")])]


@converts(s.UpSampling1D, r.UpSampling2D, v.UpSampling3D)
def upsample(ctx, layer, xs, masks):
    size = layer.size
    size = [size] if isinstance(size, int) else list(size)
    linear = getattr(layer, "interpolation", "nearest") == "bilinear"
    if linear:
        from trainer.onnx_io.preprocessing_layers import resize

        h, w = layer.input_shape[:2]
        if h is None or w is None:
            raise ctx.unsupported("bilinear upsampling of an unknown image size")
        return [resize(ctx, xs[0], (h, w), (h * size[0], w * size[1]), "bilinear")]
    scales = ctx.const([1.0, *size, 1.0], "scales")
    return [ctx.op("Resize", [xs[0], "", scales], mode="nearest", nearest_mode="floor",
                   coordinate_transformation_mode="asymmetric")]


@converts(s.Masking)
def masking(ctx, layer, xs, masks):
    """keep = any(x != mask_value over the features); y = x·keep; the mask is keep."""
    differs = ctx.op("Not", [ctx.op("Equal", [xs[0], ctx.scalar(layer.mask_value)])])
    keep = ctx.op("Cast", [differs], to=1)
    keep = ctx.op("ReduceMax", [keep], axes=[-1], keepdims=0)  # (N, T)
    ctx.out_mask = keep
    return [ctx.op("Mul", [xs[0], ctx.op("Unsqueeze", [keep, ctx.ints([2], "axes")])])]
