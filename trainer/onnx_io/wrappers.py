"""TimeDistributed: the wrapped layer on (batch·time, *s), folded back to
(batch, time, *s'). The inner layer's converter does the work."""

from trainer.layers.wrappers import TimeDistributed
from trainer.onnx_io.registry import converts, layer_converter


@converts(TimeDistributed)
def time_distributed(ctx, layer, xs, masks):
    inner = layer.layer
    convert = layer_converter(inner)
    if convert is None:
        raise ctx.unsupported(f"the wrapped {type(inner).__name__}")
    x = xs[0]
    shape = ctx.op("Shape", [x])
    batch_time = ctx.op("Slice", [shape, ctx.ints([0], "starts"), ctx.ints([2], "ends")])
    folded = ctx.reshape(x, [-1, *inner.input_shape])
    saved = ctx.out_mask
    (y,) = convert(ctx, inner, [folded], [None])
    ctx.out_mask = saved
    out_shape = ctx.op("Concat", [batch_time, ctx.ints(inner.output_shape, "shape")], axis=0)
    return [ctx.op("Reshape", [y, out_shape])]
