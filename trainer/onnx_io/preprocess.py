"""The run's preprocessing steps of an input as ONNX ops in front of the graph
(``trainer export --with-preprocessing``): rescale, standardize, normalize, clip,
reshape, with the statistics fitted on the training data as constants. Any other step
(cast, one_hot, class_ids, ...) is refused by name: it has no float32 ONNX form."""

import numpy as np

from trainer.errors import ConfigError

#: step name (as configs write it) → converter; looked up by the step's registered name,
#: so this format library needs nothing from the data pipeline
STEPS = {}


def converts(name):
    def register(fn):
        STEPS[name] = fn
        return fn
    return register


def _name(step):
    return getattr(type(step), "registered_name", type(step).__name__)


@converts("rescale")
def _rescale(ctx, step, x):
    y = ctx.op("Mul", [x, ctx.scalar(step.scale)])
    return ctx.op("Add", [y, ctx.scalar(step.offset)])


@converts("standardize")
def _standardize(ctx, step, x):
    y = ctx.op("Sub", [x, ctx.const(step.mean, "mean")])
    return ctx.op("Div", [y, ctx.const(step.std, "std")])


@converts("normalize")
def _normalize(ctx, step, x):
    span = step.max - step.min
    scale = np.where(span > 0, (step.high - step.low) / np.where(span > 0, span, 1), 0.0)
    y = ctx.op("Mul", [ctx.op("Sub", [x, ctx.const(step.min, "min")]),
                       ctx.const(scale, "scale")])
    return ctx.op("Add", [y, ctx.scalar(step.low)])


@converts("clip")
def _clip(ctx, step, x):
    low = "" if step.min is None else ctx.scalar(step.min, "min")
    high = "" if step.max is None else ctx.scalar(step.max, "max")
    return ctx.op("Clip", [x, low, high])


@converts("reshape")
def _reshape(ctx, step, x):
    return ctx.reshape(x, [0, *step.target_shape])


def prepend(ctx, name, input_steps, shape):
    """(the ONNX name the model's input now reads, the raw input's shape or None)."""
    unknown = [_name(s) for s in input_steps if _name(s) not in STEPS]
    if unknown:
        raise ConfigError(f"export --with-preprocessing: input '{name}' has preprocessing "
                          f"step(s) {', '.join(unknown)} with no ONNX form (rescale, "
                          f"standardize, normalize, clip and reshape export); export "
                          f"without --with-preprocessing and apply them before")
    ctx.prefix = f"preprocess_{name}"
    x = name
    for step in input_steps:
        x = STEPS[_name(step)](ctx, step, x)
    if any(_name(s) == "reshape" for s in input_steps):
        shape = None  # the raw sample shape is whatever reshapes to the model's
    return x, shape
