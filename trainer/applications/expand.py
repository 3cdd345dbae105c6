"""``model: {application: NAME, ...}`` → the functional model section it stands for."""

import fnmatch

from trainer.config.families import layers as layer_registry
from trainer.config.registry import parameters
from trainer.errors import ConfigError

#: keys of an application model section that are not the family's arguments
OWN_KEYS = ("application", "name", "freeze")


def application_model(name, args, where=None, place="model.application"):
    """The application instance for ``name`` and its argument mapping."""
    from trainer.config.families import applications
    from trainer.config.registry import parameters, suggest

    try:
        known = list(parameters(applications.lookup(name)))
        unknown = [k for k in args if k not in known]
        if unknown:
            raise ConfigError(f"{name} takes no argument '{unknown[0]}'."
                              f"{suggest(unknown[0], known)} It takes: {', '.join(known)}")
        return applications.get({name: dict(args)})
    except ConfigError as exc:
        raise ConfigError(f"{place}: {exc.message}", where=where) from None


def imagenet_weights(app, mirror=None):
    """The local path of ``app``'s imagenet weight file (Keras's cache or download)."""
    from trainer.fetch import get_file

    return get_file(app.weight_file(), mirror=mirror)


def weights_path(app, cfg):
    """The weight file ``app.weights`` names, as a string: fetched for imagenet, a path
    resolved against the config's folder (which must exist), None for null."""
    from trainer.config.loader import resolve_path

    if app.weights == "imagenet":
        return str(imagenet_weights(app))
    if app.weights is None:
        return None
    path = resolve_path(cfg, app.weights).resolve()
    if not path.is_file():
        raise ConfigError(f"model.weights: file not found: {path} (expected imagenet, "
                          f"null or the path of a weight file)",
                          where=cfg.where(("model", "weights")))
    return str(path)


def freeze(specs, rule, where):
    """Set ``trainable: false`` on the layer specs ``rule`` names (True: all; a mapping
    ``{until: NAME}``; a list of name patterns). Layers without weights are left as
    they are (they have nothing to train)."""
    names = [next(iter(s.values()))["name"] for s in specs]
    if rule is True:
        chosen = set(names)
    elif isinstance(rule, dict):
        until = rule["until"]
        if until not in names:
            from trainer.config.registry import suggest

            raise ConfigError(f"freeze.until: no layer '{until}' in the application."
                              f"{suggest(until, names)}", where=where)
        chosen = set(names[:names.index(until) + 1])
    else:
        chosen = {n for n in names if any(fnmatch.fnmatchcase(n, p) for p in rule)}
        if not chosen:
            raise ConfigError(f"freeze: no layer name matches {', '.join(rule)}", where=where)
    for spec in specs:
        (kind, args), = spec.items()
        if args["name"] in chosen and "trainable" in parameters(layer_registry.lookup(kind)):
            args["trainable"] = False


def expand(cfg):
    """Replace ``cfg['model']`` (in place) by the application's functional section:
    ``{name, inputs, layers, outputs, weights}``; ``weights: imagenet`` is fetched."""
    from trainer.config.loader import validate

    model_cfg = cfg["model"]
    where = cfg.where(("model", "application"))
    both = [k for k in ("layers", "inputs", "outputs", "keras") if k in model_cfg]
    if both:
        raise ConfigError(f"model.application: the architecture comes from the application; "
                          f"drop model.{', model.'.join(both)}", where=where)
    args = {k: v for k, v in model_cfg.items() if k not in OWN_KEYS}
    if isinstance(args.get("weights"), dict):
        raise ConfigError("model.weights: with model.application, weights is imagenet, null "
                          "or the path of a weight file (loaded by name)",
                          where=cfg.where(("model", "weights")))
    app = application_model(model_cfg["application"], args, where)
    try:
        spec = app.model_config()
    except ConfigError as exc:
        raise ConfigError(f"model.application: {exc.message}", where=where) from None
    if model_cfg.get("name"):
        spec["name"] = model_cfg["name"]
    if model_cfg.get("freeze") is not None:
        freeze(spec["layers"], model_cfg["freeze"], cfg.where(("model", "freeze")))
    path = weights_path(app, cfg)
    if path is not None:
        spec["weights"] = path
    cfg["model"] = spec
    label = model_cfg["application"]
    for i in range(len(spec["layers"])):
        cfg.marks[("model", "layers", i)] = f"application {label}"
    try:
        validate(cfg)
    except ConfigError as exc:
        raise ConfigError(f"model.application: {label} expanded into a config that does not "
                          f"validate:\n{exc}", where=where) from None
    return cfg
