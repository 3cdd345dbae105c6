"""Build a Model from a validated config: graph, losses, metrics, optimizer.

Shapes are inferred here, once, so that a config whose shapes don't fit fails
before any data is read.
"""

import numpy as np

from trainer import metrics as metric_lib
from trainer.build.common import dotted, make_layer
from trainer.engine.layer import Namer
from trainer.build.model import Model, Output
from trainer.config.families import losses, optimizers
from trainer.config.registry import split_spec
from trainer.engine.graph import Graph
from trainer.errors import ConfigError
from trainer.config.usercomponents import is_user_spec


def streams(seed):
    """Independent random streams from one seed: weight init, dropout/noise."""
    init, noise = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(init), np.random.default_rng(noise)


def _input_shape(placement):
    if "input_shape" in placement:
        return tuple(placement["input_shape"])
    if "batch_input_shape" in placement:
        return tuple(placement["batch_input_shape"][1:])
    if "input_dim" in placement:
        return (placement["input_dim"],)
    return None


def build_graph(cfg, rng):
    """The Sequential stack or functional graph of ``cfg['model']``."""
    model_cfg = cfg["model"]
    if "keras" in model_cfg:  # translated into plain config, in place
        from trainer.build.keras_model import expand
        model_cfg = expand(cfg)["model"]
    if "application" in model_cfg:  # a Keras application family, written out in place
        from trainer.applications.expand import expand as expand_application
        model_cfg = expand_application(cfg)["model"]
    if any(isinstance(s, dict) and "application" in s for s in model_cfg.get("layers") or ()):
        from trainer.applications.transfer import inline  # an application, then a head
        model_cfg = inline(cfg)["model"]
    if "inputs" in model_cfg or "outputs" in model_cfg:
        from trainer.build.functional import build_functional
        return build_functional(cfg, rng)
    return build_sequential(cfg, rng)


def build_sequential(cfg, rng):
    model_cfg = cfg["model"]
    specs = model_cfg.get("layers") or []
    if not specs:
        raise ConfigError("model.layers: a Sequential model needs at least one layer",
                          where=cfg.where(("model",)))
    namer = Namer()
    shape = tuple(model_cfg["input_shape"]) if "input_shape" in model_cfg else None
    built = []
    for i, spec in enumerate(specs):
        keypath = ("model", "layers", i)
        if isinstance(spec, dict) and "call" in spec:
            raise ConfigError("model.layers: `call` (a shared layer) needs a functional "
                              "model with `inputs` and `outputs`", where=cfg.where(keypath))
        layer, placement = make_layer(spec, keypath, cfg, namer)
        if "inputs" in placement:
            raise ConfigError(f"{dotted(keypath)}: `inputs` needs a functional model "
                              f"(model.inputs and model.outputs)", where=cfg.where(keypath))
        given = _input_shape(placement)
        if given is None and i == 0 and getattr(layer, "input_length", None) is not None:
            given = (layer.input_length,)  # Embedding(input_length=T) as the first layer
        if type(layer).__name__ == "InputLayer":
            given = tuple(layer.shape) if layer.shape is not None else given
            if i != 0:
                raise ConfigError(f"{dotted(keypath)}: Input must be the first layer",
                                  where=cfg.where(keypath))
            if given is None:
                raise ConfigError(f"{dotted(keypath)}: Input needs `shape`",
                                  where=cfg.where(keypath))
            shape = given
            continue
        if given is not None:
            if i != 0 and not (i == 1 and shape is not None and not built):
                raise ConfigError(f"{dotted(keypath)}: only the first layer can set the "
                                  f"input shape", where=cfg.where(keypath))
            shape = given
        if layer.multi_output:
            raise ConfigError(f"{dotted(keypath)}: layer '{layer.name}' gives several "
                              f"outputs (return_state); a Sequential model takes one output "
                              f"per layer, use a functional model", where=cfg.where(keypath))
        built.append((layer, keypath))
    if shape is None:
        raise ConfigError("model: the input shape is unknown; give model.input_shape, an "
                          "Input layer first, or input_shape on the first layer",
                          where=cfg.where(("model",)))
    graph = Graph(["input"], [shape])
    dtype = np.dtype(cfg.get("dtype", "float32"))
    tensor = 0
    for layer, keypath in built:
        layer.dtype = dtype.type
        try:
            tensor = graph.add(layer, [tensor], rng)
        except ConfigError as exc:
            raise ConfigError(f"{dotted(keypath)}: {exc.message}",
                              where=cfg.where(keypath)) from None
    graph.outputs = [tensor]
    return graph


def build_model(cfg):
    """Graph plus compile section → a ready Model (weights initialised from the seed).
    User components the config names are imported from its folder first."""
    from trainer.config.usercomponents import using

    with using(cfg):
        return _build_model(cfg)


def _build_model(cfg):
    init_rng, noise_rng = streams(cfg.get("seed", 0))
    graph = build_graph(cfg, init_rng)
    model = Model(graph, dtype=cfg.get("dtype", "float32"), name=cfg.get("name", "model"))
    model.noise_rng = noise_rng
    for layer in model.layers:
        if hasattr(layer, "rng"):
            layer.rng = noise_rng
        if getattr(layer, "int_input", False):
            for idx, node in enumerate(graph.nodes):
                if node.layer is layer:
                    model._int_inputs.update(i for i in node.inputs if i < graph.n_inputs)
    compile_model(model, cfg)
    return model


def _per_output(value, names, what, cfg, keypath):
    """A compile value for every output: one value for all, or a mapping by name."""
    if is_user_spec(value, what):  # {loss: "my_losses:Focal", args}: one for all
        return [value] * len(names)
    by_name = isinstance(value, dict) and value and (
        any(k in names for k in value) or
        (len(names) > 1 and not (what == "loss" and len(value) == 1 and
                                 next(iter(value)) in losses)))
    if by_name:
        _check_output_keys(value, names, cfg, keypath)
        missing = [n for n in names if n not in value]
        if missing and what == "loss":
            raise ConfigError(f"{dotted(keypath)}: no loss for output(s) "
                              f"{', '.join(missing)}", where=cfg.where(keypath))
        return [value.get(n) for n in names]
    return [value] * len(names)


def _check_output_keys(mapping, names, cfg, keypath):
    """Keys of a per-output mapping (loss, loss_weights, metrics) must be output names."""
    from trainer.config.registry import suggest

    for k in mapping:
        if k not in names:
            raise ConfigError(f"{dotted(keypath)}: unknown output '{k}'.{suggest(k, names)} "
                              f"The model's outputs are: {', '.join(names)}",
                              where=cfg.where(keypath + (k,)))


def _metric_specs(specs, names):
    """compile.metrics (or weighted_metrics): one list for every output, or a list
    per output name."""
    specs = specs or []
    if isinstance(specs, dict):
        return [specs.get(n, []) for n in names]
    return [specs] * len(names)


def compile_model(model, cfg):
    comp = cfg["compile"]
    names = model.output_names
    loss_specs = _per_output(comp["loss"], names, "loss", cfg, ("compile", "loss"))
    weights = comp.get("loss_weights")
    if isinstance(weights, list):
        if len(weights) != len(names):
            raise ConfigError(f"compile.loss_weights: {len(weights)} weights for "
                              f"{len(names)} outputs", where=cfg.where(("compile", "loss_weights")))
    elif isinstance(weights, dict):
        _check_output_keys(weights, names, cfg, ("compile", "loss_weights"))
        weights = [weights.get(n, 1.0) for n in names]
    else:
        weights = [1.0] * len(names)
    for key in ("metrics", "weighted_metrics"):
        if isinstance(comp.get(key), dict):
            _check_output_keys(comp[key], names, cfg, ("compile", key))
    plain = _metric_specs(comp.get("metrics"), names)
    weighted = _metric_specs(comp.get("weighted_metrics"), names)
    outputs = []
    for k, name in enumerate(names):
        units = model.graph.shapes[model.graph.outputs[k]][-1]
        try:
            loss_name = loss_specs[k]["loss"] if is_user_spec(loss_specs[k], "loss") \
                else split_spec(loss_specs[k])[0]
            loss = losses.get(loss_specs[k])
        except ConfigError as exc:
            raise ConfigError(f"compile.loss: {exc.message}",
                              where=cfg.where(("compile", "loss"))) from None
        ms, seen = [], {}
        for spec, is_weighted in [(s, False) for s in plain[k]] + [(s, True) for s in weighted[k]]:
            try:
                m = metric_lib.get(spec, loss=loss, output_units=units)
            except ConfigError as exc:
                key = "weighted_metrics" if is_weighted else "metrics"
                raise ConfigError(f"compile.{key}: {exc.message}",
                                  where=cfg.where(("compile", key))) from None
            # Keras 2 logs weighted metrics as weighted_<name>, a repeated name as name_1
            user = is_user_spec(spec, "metric")  # its own Keras-style name
            base = ("weighted_" if is_weighted else "") + \
                (m.name if user else metric_lib.logged_name(split_spec(spec)[0]))
            m.name = base if base not in seen else f"{base}_{seen[base]}"
            seen[base] = seen.get(base, 0) + 1
            m.weighted = is_weighted
            ms.append(m)
        outputs.append(Output(name, units, loss, loss_name, float(weights[k]), ms))
    try:
        optimizer = optimizers.get(comp.get("optimizer", "rmsprop"))
    except ConfigError as exc:
        raise ConfigError(f"compile.optimizer: {exc.message}",
                          where=cfg.where(("compile", "optimizer"))) from None
    model.compile(outputs, optimizer)
