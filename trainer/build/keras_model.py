"""The model section's Keras options, read with trainer.keras_io: ``model.keras`` (a
Keras model file translated into plain config) and ``model.weights`` (Keras HDF5
weights loaded into the built model). Here, not in keras_io, so that the format
library knows nothing of configs."""

import zipfile

from trainer.config.loader import resolve_path, validate
from trainer.errors import ConfigError, DataError
from trainer.keras_io import read_model_file
from trainer.keras_io.h5 import read_weights
from trainer.keras_io.native import open_weights
from trainer.keras_io.translate import translate_model


def expand(cfg):
    """Replace ``model.keras`` in ``cfg`` (in place) by the translated model section, so
    the builder, the run folder's config.yaml and ``model.weights`` see plain config."""
    model_cfg = cfg["model"]
    where = cfg.where(("model", "keras"))
    both = [k for k in ("input_shape", "layers", "inputs", "outputs") if k in model_cfg]
    if both:
        raise ConfigError(f"model.keras: the architecture comes from the Keras file; drop "
                          f"model.{', model.'.join(both)} (or drop model.keras)", where=where)
    path = resolve_path(cfg, model_cfg["keras"]).resolve()
    keras, has_weights = read_model_file(path, where)
    weights = model_cfg.get("weights") or (str(path) if has_weights else None)
    try:
        model, problems = translate_model(keras, path.name, lenient_init=weights is not None,
                                          native=zipfile.is_zipfile(path))
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        # a file Keras did not write this way (edited, corrupted): the translation reads
        # the structure Keras writes, and says so instead of failing inside
        raise ConfigError(f"model.keras: {path.name} does not hold a Keras model config "
                          f"in the form Keras writes ({type(exc).__name__}: {exc})",
                          where=where) from exc
    if problems.layers or problems.items:
        raise ConfigError(f"model.keras: {problems.message(path.name)}", where=where)
    for key in ("name", "weights"):
        if key in model_cfg:
            model[key] = model_cfg[key]
    if weights is not None:
        model["weights"] = weights
    cfg["model"] = model
    for i, spec in enumerate(model.get("layers", [])):
        args = next(iter(spec.values())) if isinstance(spec, dict) else {}
        label = spec.get("call") if "call" in spec else (args or {}).get("name", "?")
        cfg.marks[("model", "layers", i)] = f"{path.name}: Keras layer '{label}'"
    try:
        validate(cfg)
    except ConfigError as exc:
        raise ConfigError(f"model.keras: {path.name} translated into a config that does "
                          f"not validate:\n{exc}", where=where) from None
    return cfg


def load_weights_option(cfg, model):
    """``model.weights`` of a config: a path, or {path, by_name, skip_mismatch}."""
    spec = cfg["model"].get("weights")
    if spec is None:
        return
    opts = {"path": spec} if isinstance(spec, str) else dict(spec)
    path = resolve_path(cfg, opts["path"])
    where = cfg.where(("model", "weights"))
    try:
        with open_weights(path) as (f, keras):
            read_weights(f, model, path, by_name=opts.get("by_name", True),
                         skip_mismatch=opts.get("skip_mismatch", False), strict=False,
                         keras=keras)
    except ConfigError as exc:
        raise ConfigError(f"model.weights: {exc.message}", where=where) from None
    except DataError as exc:
        raise DataError(f"model.weights: {exc.message}", where=where) from None
    except (OSError, KeyError, ValueError, TypeError) as exc:  # damaged inside
        raise DataError(f"model.weights: cannot read the weights in {path}: {exc}",
                        where=where) from exc
