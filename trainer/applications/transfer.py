"""An application as the first part of a model, for transfer learning (Keras's recipe):

    model:
      layers:
        - {application: MobileNet, weights: imagenet, include_top: false, name: base,
           input_shape: [160, 160, 3], trainable: false}
        - GlobalAveragePooling2D
        - Dense: {units: 5, activation: softmax}

The application's layers are written into the layer list in its place (with Keras's
names, so its weight file loads by name; the new head keeps its initial weights), and
the model becomes functional. ``name`` adds a no-op layer of that name after the
application's output, for ``inputs:`` references. Freezing: ``trainable: false``
freezes every layer of the application; ``freeze: {until: block5_pool}`` the layers
up to and including one; ``freeze: [conv1*, "conv2_*"]`` those whose names match.
``model.weights`` (a checkpoint of the whole model, e.g. to continue fine-tuning with
the base unfrozen) replaces the application's own weights, which are then not fetched.
"""

from trainer.applications.expand import application_model, freeze, weights_path
from trainer.engine.layer import Namer
from trainer.errors import ConfigError
from trainer.config.families import layers as layer_registry
from trainer.config.registry import parameters, split_spec

#: keys of an application entry that are not the family's arguments
ENTRY_KEYS = ("application", "name", "inputs", "trainable", "freeze")


def inline(cfg):
    """Write the application entry of ``cfg['model']['layers']`` out in place (in
    place in ``cfg``); the model becomes functional."""
    model = cfg["model"]
    specs = model["layers"]
    found = [i for i, s in enumerate(specs) if isinstance(s, dict) and "application" in s]
    if len(found) > 1:
        raise ConfigError("model.layers: one application per model",
                          where=cfg.where(("model", "layers", found[1])))
    i = found[0]
    entry, keypath = specs[i], ("model", "layers", found[0])
    where = cfg.where(keypath)
    place = f"model.layers[{i}]"
    functional = "inputs" in model
    if not functional and i != 0:
        raise ConfigError(f"{place}: in a Sequential layer list the application must be the "
                          f"first layer (or give model.inputs/outputs)", where=where)
    args = {k: v for k, v in entry.items() if k not in ENTRY_KEYS}
    if not functional and "input_shape" in model and "input_shape" not in args:
        args["input_shape"] = model["input_shape"]
    app = application_model(entry["application"], args, where, place=f"{place}.application")
    try:
        spec = app.model_config()
    except ConfigError as exc:
        raise ConfigError(f"{place}.application: {exc.message}", where=where) from None
    new = spec["layers"]
    if entry.get("trainable") is False:
        freeze(new, True, where)
    if entry.get("freeze") is not None:
        freeze(new, entry["freeze"], cfg.where(keypath + ("freeze",)))
    source = next(iter(spec["inputs"]))
    if functional:
        source = entry.get("inputs") or (next(iter(model["inputs"])) if i == 0 else None)
        if source is None:
            raise ConfigError(f"{place}: give the application `inputs` (the layer or model "
                              f"input it reads)", where=where)
        for s in new:
            args_ = next(iter(s.values()))
            args_["inputs"] = [source if r == "input_1" else r for r in args_["inputs"]] \
                if isinstance(args_["inputs"], list) else \
                (source if args_["inputs"] == "input_1" else args_["inputs"])
    if entry.get("name"):
        new.append({"Activation": {"activation": "linear", "name": entry["name"],
                                   "inputs": spec["outputs"][0]}})
    rest = specs[i + 1:]
    model["layers"] = specs[:i] + new + rest
    if not functional:
        model.pop("input_shape", None)
        model["inputs"] = spec["inputs"]
        model["outputs"] = [_name_last(model["layers"], cfg)]
    for k in range(i, i + len(new)):
        cfg.marks[("model", "layers", k)] = f"{place}: application {entry['application']}"
    for k, _ in enumerate(rest):  # the head keeps its own places in the config file
        old = keypath[:2] + (i + 1 + k,)
        cfg.marks[("model", "layers", i + len(new) + k)] = cfg.where(old)
    if not model.get("weights"):  # model.weights (a whole checkpoint) wins
        path = weights_path(app, cfg)
        if path is not None:
            model["weights"] = {"path": path, "by_name": True}
    return cfg


def _name_last(specs, cfg):
    """The name of the last layer entry, written into it when it has none (the name the
    builder would give it), so that it can be the model's output."""
    namer = Namer()
    named = []
    for spec in specs:
        if isinstance(spec, str):
            spec = {spec: {}}
        if "layer" in spec:
            kind, args = spec["layer"].split(":")[-1], spec
        else:
            kind, args = split_spec(spec)
            kind = layer_registry.lookup(kind).registered_name
            args = args if isinstance(args, dict) else None
        name = (args or {}).get("name")
        named.append(namer.claim(name, None) if name else namer.auto(kind))
    last = specs[-1]
    if isinstance(last, str):
        specs[-1] = {last: {"name": named[-1]}}
    elif "layer" in last:
        last.setdefault("name", named[-1])
    else:
        (kind, args), = last.items()
        if not isinstance(args, dict):  # a bare scalar argument: its first parameter
            first = next(iter(parameters(layer_registry.lookup(kind))))
            args = {first: args} if args is not None else {}
            last[kind] = args
        args.setdefault("name", named[-1])
    return named[-1]
