"""BatchNormalization (inference form: the moving statistics folded into one scale and
shift), LayerNormalization over any axes, GroupNormalization, UnitNormalization.

x̂ = (x − mean) / √(var + ε) is written with ReduceMean, as the layers compute it, so a
list of axes (not only the trailing ones ONNX's LayerNormalization takes) exports."""

import numpy as np

from trainer.layers import normalization as n
from trainer.onnx_io.registry import converts


def _affine(ctx, layer, xhat):
    y = xhat
    if layer.scale:
        y = ctx.op("Mul", [y, ctx.const(layer.params["gamma"].reshape(layer._bshape),
                                        "gamma")])
    if layer.center:
        y = ctx.op("Add", [y, ctx.const(layer.params["beta"].reshape(layer._bshape),
                                        "beta")])
    return y


def normalized(ctx, x, axes, epsilon):
    mean = ctx.op("ReduceMean", [x], axes=list(axes), keepdims=1)
    centred = ctx.op("Sub", [x, mean])
    var = ctx.op("ReduceMean", [ctx.op("Mul", [centred, centred])], axes=list(axes),
                 keepdims=1)
    std = ctx.op("Sqrt", [ctx.op("Add", [var, ctx.scalar(epsilon)])])
    return ctx.op("Div", [centred, std])


@converts(n.BatchNormalization)
def batch_norm(ctx, layer, xs, masks):
    mean = layer.buffers["moving_mean"].astype(np.float64).reshape(layer._bshape)
    var = layer.buffers["moving_variance"].astype(np.float64).reshape(layer._bshape)
    scale = 1.0 / np.sqrt(var + layer.epsilon)
    shift = -mean * scale
    if layer.scale:
        gamma = layer.params["gamma"].astype(np.float64).reshape(layer._bshape)
        scale, shift = scale * gamma, shift * gamma
    if layer.center:
        shift = shift + layer.params["beta"].astype(np.float64).reshape(layer._bshape)
    y = ctx.op("Mul", [xs[0], ctx.const(scale, "scale")])
    return [ctx.op("Add", [y, ctx.const(shift, "shift")])]


@converts(n.LayerNormalization)
def layer_norm(ctx, layer, xs, masks):
    return [_affine(ctx, layer, normalized(ctx, xs[0], layer._feature_axes, layer.epsilon))]


@converts(n.GroupNormalization)
def group_norm(ctx, layer, xs, masks):
    """(N, ..., C) → (N, ..., groups, C/groups), normalised over all but N and groups."""
    rank = len(layer.input_shape) + 1
    per = layer._per_group
    xr = ctx.reshape(xs[0], [0] * (rank - 1) + [-1, per])
    axes = [*range(1, rank - 1), rank]
    xhat = normalized(ctx, xr, axes, layer.epsilon)
    xhat = ctx.op("Reshape", [xhat, ctx.op("Shape", xs)])
    return [_affine(ctx, layer, xhat)]


@converts(n.UnitNormalization)
def unit_norm(ctx, layer, xs, masks):
    x = xs[0]
    total = ctx.op("ReduceSum", [ctx.op("Mul", [x, x]), ctx.ints(layer._axes, "axes")],
                   keepdims=1)
    norm = ctx.op("Sqrt", [ctx.op("Max", [total, ctx.scalar(1e-12)])])
    return [ctx.op("Div", [x, norm])]
