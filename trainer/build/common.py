"""What the sequential and functional builders share: making one layer from its config
entry (registered class or user code) and naming it the Keras way."""

from trainer.config.families import layers as layer_registry
from trainer.config.registry import parameters, split_spec
from trainer.errors import ConfigError

# Arguments that place a layer in a model rather than configure it.
PLACEMENT = ("input_shape", "input_dim", "batch_input_shape", "inputs")


def load_layer(spec, cfg, keypath):
    """A user layer from its config entry: a subclass of trainer.engine.layer.Layer
    built with ``args``, then given the entry's ``name`` and ``trainable``."""
    from trainer.config.usercode import instantiate
    from trainer.engine.layer import Layer

    layer = instantiate(spec, "layer", Layer, cfg)
    if "name" in spec:
        layer.name = spec["name"]
    if "trainable" in spec:
        layer.trainable = bool(spec["trainable"])
    return layer


def make_layer(spec, keypath, cfg, namer):
    """A layer instance from its config entry; returns (layer, placement args)."""
    where = cfg.where(keypath)
    user = isinstance(spec, dict) and "layer" in spec
    if user:  # {layer: "module:Class", args: {...}, name, inputs, input_shape, ...}
        placement = {k: spec[k] for k in PLACEMENT if k in spec}
        build = lambda: load_layer(spec, cfg, keypath)  # noqa: E731
    else:
        name, args = split_spec(spec)
        args = dict(args) if isinstance(args, dict) else args
        placement = {}
        cls = layer_registry.lookup(name)
        if isinstance(args, dict):  # Embedding's own input_dim is its vocabulary size
            placement = {k: args.pop(k) for k in PLACEMENT
                         if k in args and k not in parameters(cls)}
        build = lambda: layer_registry.get({name: args})  # noqa: E731
    try:
        layer = build()
    except ConfigError as exc:
        raise ConfigError(f"{dotted(keypath)}: {exc.message}", where=where) from None
    except ValueError as exc:
        raise ConfigError(f"{dotted(keypath)}: {exc}", where=where) from None
    if layer.name is None:
        layer.name = namer.auto(type(layer).__name__ if user else cls.registered_name)
    else:
        layer.name = namer.claim(layer.name, where)
    layer.config_where = where
    layer.spec_index = keypath[-1]
    return layer, placement


def dotted(keypath):
    from trainer.config.loader import format_path
    return format_path(keypath)
