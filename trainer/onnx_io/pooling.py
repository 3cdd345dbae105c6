"""Pooling: Max/AveragePooling1D/2D/3D and the global poolings.

'same' average pooling counts only the cells inside the input, as Keras:
AveragePool with explicit pads and ``count_include_pad=0``. GlobalAveragePooling1D
with a mask is the mean over the unmasked steps (Σ x·m / max(Σ m, 1))."""

from trainer.layers import pooling as p
from trainer.layers.volumetric import AveragePooling3D, MaxPooling3D
from trainer.onnx_io.conv import channels_first_op, window_pads
from trainer.onnx_io.registry import converts


@converts(p.MaxPooling1D, p.MaxPooling2D, MaxPooling3D, p.AveragePooling1D,
          p.AveragePooling2D, AveragePooling3D)
def pool(ctx, layer, xs, masks):
    rank = layer.rank
    pads = window_pads(layer.input_shape[:rank], layer.pool_size, layer.strides,
                       (1,) * rank, layer.padding)
    op_type = "MaxPool" if layer.mode == "max" else "AveragePool"
    extra = {} if layer.mode == "max" else {"count_include_pad": 0}
    return [channels_first_op(ctx, xs[0], rank, op_type, kernel_shape=list(layer.pool_size),
                              strides=list(layer.strides), pads=pads,
                              auto_pad=None if pads is not None else "SAME_UPPER", **extra)]


@converts(p.GlobalMaxPooling1D, p.GlobalMaxPooling2D, p.GlobalMaxPooling3D,
          p.GlobalAveragePooling1D, p.GlobalAveragePooling2D, p.GlobalAveragePooling3D)
def global_pool(ctx, layer, xs, masks):
    axes = list(range(1, layer.rank + 1))
    keep = int(layer.keepdims)
    if layer.mode != "max" and masks[0] is not None and layer.takes_mask:
        m = ctx.op("Unsqueeze", [masks[0], ctx.ints([2], "axes")])  # (N, T, 1)
        total = ctx.op("ReduceSum", [ctx.op("Mul", [xs[0], m]), ctx.ints(axes, "axes")],
                       keepdims=keep)
        count = ctx.op("ReduceSum", [m, ctx.ints(axes, "axes")], keepdims=keep)
        count = ctx.op("Max", [count, ctx.scalar(1.0)])
        return [ctx.op("Div", [total, count])]
    op_type = "ReduceMax" if layer.mode == "max" else "ReduceMean"
    return [ctx.op(op_type, xs, axes=axes, keepdims=keep)]
