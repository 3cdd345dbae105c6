"""Dense, Flatten, and the layers that are the identity at inference: Dropout and its
spatial/alpha forms, GaussianNoise, GaussianDropout, ActivityRegularization."""

from trainer.layers import noise
from trainer.layers.core import ActivityRegularization, Dense, Dropout, Flatten
from trainer.onnx_io.registry import activation, converts


@converts(Dense)
def dense(ctx, layer, xs, masks):
    """x @ kernel + bias on the last axis (MatMul broadcasts over leading axes)."""
    b = layer.params["bias"] if layer.use_bias else None
    y = ctx.matmul_add(xs[0], layer.params["kernel"], b)
    return [activation(ctx, layer.activation, y)]


@converts(Dropout, noise.SpatialDropout1D, noise.SpatialDropout2D, noise.SpatialDropout3D,
          noise.GaussianNoise, noise.GaussianDropout, noise.AlphaDropout,
          ActivityRegularization)
def identity(ctx, layer, xs, masks):
    """Noise and penalties act only while training: the identity at inference."""
    return [ctx.op("Identity", xs)]


@converts(Flatten)
def flatten(ctx, layer, xs, masks):
    return [ctx.op("Flatten", xs, axis=1)]
