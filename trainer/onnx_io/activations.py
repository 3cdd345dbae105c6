"""Activations (the functions layers take as ``activation``) and the activation
layers (ReLU, LeakyReLU, PReLU, ELU, ThresholdedReLU, Softmax, Activation).

Keras 2's hard_sigmoid is clip(0.2·x + 0.5, 0, 1): ONNX's HardSigmoid with alpha 0.2,
beta 0.5. A softmax over any axis is ONNX's Softmax on that axis (opset 13+ normalises
over the one axis, as Keras)."""

import math

from trainer.activations import basic, more
from trainer.layers import advanced_activations as adv
from trainer.layers.core import Activation
from trainer.layers.sequence_shaping import ThresholdedReLU
from trainer.onnx_io.registry import activation, converts, converts_activation


@converts_activation(basic.Linear)
def _linear(ctx, fn, x):
    return x


def _simple(op_type, **attrs):
    def convert(ctx, fn, x):
        return ctx.op(op_type, [x], **attrs)
    return convert


for _cls, _op in [(basic.Relu, "Relu"), (basic.Sigmoid, "Sigmoid"), (basic.Tanh, "Tanh"),
                  (more.Softplus, "Softplus"), (more.Softsign, "Softsign"),
                  (more.Exponential, "Exp")]:
    converts_activation(_cls)(_simple(_op))
converts_activation(more.HardSigmoid)(_simple("HardSigmoid", alpha=0.2, beta=0.5))
converts_activation(more.Selu)(_simple("Selu", alpha=more.SELU_ALPHA, gamma=more.SELU_SCALE))


@converts_activation(basic.Softmax)
def _softmax(ctx, fn, x):
    return ctx.op("Softmax", [x], axis=fn.axis)


@converts_activation(more.Elu)
def _elu(ctx, fn, x):
    return ctx.op("Elu", [x], alpha=float(fn.alpha))


@converts_activation(more.Swish)
def _swish(ctx, fn, x):
    return ctx.op("Mul", [x, ctx.op("Sigmoid", [x])])


@converts_activation(more.Gelu)
def _gelu(ctx, fn, x):
    half = ctx.op("Mul", [x, ctx.scalar(0.5)])
    if fn.approximate:  # 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
        cube = ctx.op("Mul", [ctx.op("Mul", [x, x]), x])
        inner = ctx.op("Add", [x, ctx.op("Mul", [cube, ctx.scalar(0.044715)])])
        t = ctx.op("Tanh", [ctx.op("Mul", [inner, ctx.scalar(fn.C)])])
    else:  # 0.5·x·(1 + erf(x/√2))
        t = ctx.op("Erf", [ctx.op("Mul", [x, ctx.scalar(1 / math.sqrt(2))])])
    return ctx.op("Mul", [half, ctx.op("Add", [t, ctx.scalar(1.0)])])


# -- the layers ---------------------------------------------------------------------
@converts(Activation)
def _activation_layer(ctx, layer, xs, masks):
    return [activation(ctx, layer.activation, xs[0])]


@converts(adv.Softmax, adv.ELU)
def _function_layer(ctx, layer, xs, masks):
    return [activation(ctx, layer._fn, xs[0])]


@converts(adv.LeakyReLU)
def _leaky(ctx, layer, xs, masks):
    return [ctx.op("LeakyRelu", xs, alpha=float(layer.alpha))]


@converts(adv.PReLU)
def _prelu(ctx, layer, xs, masks):
    return [ctx.op("PRelu", [xs[0], ctx.const(layer.params["alpha"], "alpha")])]


@converts(adv.ReLU)
def _relu(ctx, layer, xs, masks):
    """negative_slope·(x − threshold) below threshold, x up to max_value, then max_value."""
    x = xs[0]
    t, slope = float(layer.threshold), float(layer.negative_slope)
    if t == 0 and slope == 0:
        y = ctx.op("Relu", [x])
    else:
        below = ctx.op("Less", [x, ctx.scalar(t)])
        low = ctx.op("Mul", [ctx.op("Sub", [x, ctx.scalar(t)]), ctx.scalar(slope)])
        y = ctx.op("Where", [below, low, x])
    if layer.max_value is not None:
        top = ctx.op("GreaterOrEqual", [x, ctx.scalar(layer.max_value)])
        y = ctx.op("Where", [top, ctx.scalar(layer.max_value), y])
    return [y]


@converts(ThresholdedReLU)
def _thresholded(ctx, layer, xs, masks):
    return [ctx.op("ThresholdedRelu", xs, alpha=float(layer.theta))]
