"""One Keras layer record → our ``{Name: args}`` layer spec, generically.

A Keras ``class_name`` is looked up in our layer registry (our layers carry Keras 2
names and arguments). An argument our layer takes is kept, nested ``{class_name,
config}`` initializers, regularizers and wrapped layers turned into our ``{name: args}``
components; Keras bookkeeping that doesn't change what a layer computes (``dtype``,
seeds, ``null`` constraints, ``channels_last``, ...) is dropped; anything else is
recorded in ``Problems``, so that a file's every unsupported layer and argument is named
in one error. The exceptions are the small tables below.
"""

import typing

from trainer.config import families
from trainer.config.registry import Ref, _hints, parameters

IGNORED = {"dtype", "seed", "batch_size", "fused", "implementation", "use_cudnn",
           "autocast", "build_config", "module", "registered_name", "input_dtype",
           "renorm_momentum", "renorm_clipping", "zero_output_for_mask",
           "trainable"}  # only where our layer has no weights (else it takes trainable)

# Harmless at these values when our layer doesn't take the argument.
HARMLESS = {
    "data_format": lambda v: v == "channels_last",
    "groups": lambda v: v == 1,
    "dilation_rate": lambda v: all(d == 1 for d in (v if isinstance(v, list) else [v])),
    **{k: (lambda v: not v) for k in ("sparse", "ragged", "synchronized", "unroll",
                                      "stateful", "time_major", "go_backwards", "renorm",
                                      "optional", "use_gate", "rms_scaling",
                                      "pad_to_aspect_ratio", "antialias")},
    # Keras 3's Resizing: how padding would be filled (with pad_to_aspect_ratio, refused)
    "fill_mode": lambda v: v == "constant",
    "fill_value": lambda v: v == 0,
    # Keras 3 writes the attention axes it resolved: for (batch, time, features) inputs,
    # the only ones trainer's attention takes, that is the time axis
    "attention_axes": lambda v: v in ([1], 1, [-2], -2),
}

# Keras 3 renamed a few arguments; ours are Keras 2's.
RENAMED = {("LeakyReLU", "negative_slope"): "alpha"}

# Keras class names of plain VarianceScaling settings we know under their own name.
VARIANCE_SCALING = {
    (1.0, "fan_avg", "uniform"): "glorot_uniform",
    (1.0, "fan_avg", "truncated_normal"): "glorot_normal",
    (2.0, "fan_in", "uniform"): "he_uniform",
    (2.0, "fan_in", "truncated_normal"): "he_normal",
    (1.0, "fan_in", "uniform"): "lecun_uniform",
    (1.0, "fan_in", "truncated_normal"): "lecun_normal",
}

MODELS = ("Sequential", "Functional", "Model")


class Problems:
    """Everything a file uses that we can't build, reported at once."""

    def __init__(self):
        self.layers = {}  # class name → layer names
        self.items = []

    def layer(self, cls, name):
        self.layers.setdefault(str(cls), []).append(str(name))

    def add(self, text):
        self.items.append(text)

    def message(self, source):
        lines = []
        if self.layers:
            listed = "; ".join(f"{c} ({', '.join(n)})" for c, n in self.layers.items())
            lines.append(f"unsupported Keras layers: {listed}. Supported layers: "
                         f"{', '.join(sorted(families.layers.names()))}")
        lines += self.items
        head = f"{source}: the Keras model uses what trainer can't build"
        return head + ":\n  " + "\n  ".join(lines) if lines else ""


PLACEMENT = ("batch_input_shape", "batch_shape", "input_shape")


def layer_spec(rec, ctx, frozen=False):
    """A Keras layer record → ``{OurName: args}``, or None (a problem was noted)."""
    problems = ctx["problems"]
    cls_name = rec.get("class_name")
    kc = rec.get("config") or {}
    name = kc.get("name") or rec.get("name") or "?"
    if cls_name in MODELS:
        problems.add(f"layer '{name}' is a nested {cls_name} model here; not supported")
        return None
    if cls_name not in families.layers:
        problems.layer(cls_name, name)
        return None
    cls = families.layers.lookup(cls_name)
    params = parameters(cls)
    kinds = component_kinds(cls)
    args = {}
    for key, value in kc.items():
        ours = RENAMED.get((cls_name, key), key)
        if key in PLACEMENT or (key == "input_dim" and key not in params) or value is None:
            continue  # where the layer sits (the model translation takes it), or a default
        if ours in params:
            kind = kinds.get(ours)
            gates = key == "recurrent_activation" and cls_name in ("LSTM", "GRU")
            args[ours] = _component(value, kind, f"layer '{name}' argument {key}",
                                    {**ctx, "keras3": ctx.get("keras3") and not (
                                        gates and ctx.get("native"))}) \
                if kind else value
        elif key in IGNORED or HARMLESS.get(key, lambda v: False)(value):
            continue
        else:
            problems.add(f"layer '{name}' ({cls_name}): argument {key}={_short(value)} is "
                         f"not supported")
    args = {k: v for k, v in args.items() if v is not _DROP}
    if frozen and "trainable" in params:
        args["trainable"] = False  # inside a frozen nested model
    return {families.layers.canonical(cls_name): args}


_DROP = object()


def component_kinds(cls):
    """Argument name → registry kind, for the arguments that are components."""
    out = {}
    for arg, hint in _hints(cls).items():
        for meta in typing.get_args(hint)[1:] if typing.get_origin(hint) is typing.Annotated \
                else ():
            if isinstance(meta, Ref):
                out[arg] = meta.kind
    return out


def _component(value, kind, what, ctx):
    """A Keras serialized component → our spec (a name or {name: args})."""
    problems = ctx["problems"]
    if value is None:
        return None
    if kind == "layer" and isinstance(value, dict) and "class_name" in value:
        spec = layer_spec(value, ctx)
        return _DROP if spec is None else spec
    registry = families.ALL[kind]
    if isinstance(value, dict) and value.get("class_name") == "function" \
            and isinstance(value.get("config"), str):
        value = value["config"]  # Keras 3 form of a built-in activation
    if isinstance(value, str):
        if kind == "activation" and value == "hard_sigmoid" and ctx.get("keras3"):
            # (an LSTM's or GRU's gates from a .keras archive are converted exactly:
            # gates.from_keras3_gates)
            problems.add(f"{what}: Keras 3's hard_sigmoid is relu6(x + 3) / 6; trainer's is "
                         f"Keras 2's clip(0.2 x + 0.5, 0, 1), so this file's numbers can't "
                         f"be reproduced")
            return _DROP
        if value in registry:
            return value
        return _unknown(value, kind, what, ctx)
    if not (isinstance(value, dict) and "class_name" in value):
        return value  # already ours
    name, config = value["class_name"], value.get("config") or {}
    if name == "VarianceScaling":
        key = (float(config.get("scale", 1.0)), config.get("mode", "fan_in"),
               {"normal": "truncated_normal"}.get(config.get("distribution"),
                                                   config.get("distribution")))
        if key in VARIANCE_SCALING:
            return VARIANCE_SCALING[key]
    if name not in registry:
        return _unknown(name, kind, what, ctx)
    params = parameters(registry.lookup(name))
    args, bad = {}, []
    for k, v in config.items():
        if k in params and v is not None:
            args[k] = v
        elif k not in IGNORED and v is not None:
            bad.append(f"{what}: {kind} {name} argument {k}={_short(v)} is not supported")
    if bad and kind == "initializer" and ctx["lenient_init"]:
        return _DROP
    for text in bad:
        problems.add(text)
    return {name: args} if args else name


def _unknown(name, kind, what, ctx):
    if kind == "initializer" and ctx["lenient_init"]:
        return _DROP  # the weights come from a file: the layer's default will do
    ctx["problems"].add(f"{what}: unknown {kind} '{name}'")
    return _DROP


def _short(value):
    if isinstance(value, dict) and "class_name" in value:
        return value["class_name"]
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
