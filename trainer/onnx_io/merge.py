"""Merges: Add, Subtract, Multiply, Average, Maximum, Minimum (inputs of lower rank get
size-1 axes after the batch axis, as the layers align them), Concatenate, Dot.

Masks as the layers compute them: the element-wise merges AND their inputs' masks;
Concatenate joins them along time (axis 1), an input without one counting as unmasked,
and ANDs them otherwise."""

from trainer.layers import merge as m
from trainer.onnx_io.registry import converts


def _aligned(ctx, layer, xs):
    ranks = [len(s) for s in layer.input_shape]
    top = max(ranks)
    return [x if r == top else ctx.op("Unsqueeze", [x, ctx.ints(range(1, 1 + top - r),
                                                                 "axes")])
            for x, r in zip(xs, ranks)]


def _and(ctx, masks):
    have = [k for k in masks if k is not None]
    if not have:
        return None
    out = have[0]
    for k in have[1:]:
        out = ctx.op("Mul", [out, k])
    return out


def _variadic(op_type, scale=False):
    def convert(ctx, layer, xs, masks):
        ctx.out_mask = _and(ctx, masks)
        y = ctx.op(op_type, _aligned(ctx, layer, xs))
        return [ctx.op("Div", [y, ctx.scalar(len(xs))]) if scale else y]
    return convert


converts(m.Add)(_variadic("Sum"))
converts(m.Maximum)(_variadic("Max"))
converts(m.Minimum)(_variadic("Min"))
converts(m.Average)(_variadic("Sum", scale=True))


@converts(m.Multiply)
def multiply(ctx, layer, xs, masks):
    ctx.out_mask = _and(ctx, masks)
    ys = _aligned(ctx, layer, xs)
    y = ys[0]
    for x in ys[1:]:
        y = ctx.op("Mul", [y, x])
    return [y]


@converts(m.Subtract)
def subtract(ctx, layer, xs, masks):
    ctx.out_mask = _and(ctx, masks)
    return [ctx.op("Sub", _aligned(ctx, layer, xs))]


@converts(m.Concatenate)
def concatenate(ctx, layer, xs, masks):
    ctx.out_mask = None
    if any(k is not None for k in masks) and len(layer.input_shape[0]) >= 2:
        full = [k if k is not None else _ones_mask(ctx, x) for x, k in zip(xs, masks)]
        ctx.out_mask = ctx.op("Concat", full, axis=1) if layer._axis == 1 else \
            _and(ctx, full)
    return [ctx.op("Concat", xs, axis=layer._axis)]


def _ones_mask(ctx, x):
    """A mask of ones of shape (batch, time) of ``x``."""
    shape = ctx.op("Slice", [ctx.op("Shape", [x]), ctx.ints([0], "starts"),
                             ctx.ints([2], "ends")])
    return ctx.op("ConstantOfShape", [shape], value=ctx.helper.make_tensor(
        "one", 1, [1], [1.0]))


def _l2_normalize(ctx, x, axis):
    total = ctx.op("ReduceSum", [ctx.op("Mul", [x, x]), ctx.ints([axis], "axes")],
                   keepdims=1)
    return ctx.op("Div", [x, ctx.op("Sqrt", [ctx.op("Max", [total, ctx.scalar(1e-12)])])])


@converts(m.Dot)
def dot(ctx, layer, xs, masks):
    a, b = xs
    if layer.normalize:
        a, b = _l2_normalize(ctx, a, layer._axes[0]), _l2_normalize(ctx, b, layer._axes[1])
    s1, s2, so = layer._subs
    y = ctx.op("Einsum", [a, b], equation=f"{s1},{s2}->{so}")
    return [ctx.reshape(y, [-1, 1]) if len(so) == 1 else y]
