"""Built-in datasets know the shape of their samples before any data is made or read,
so a model whose inputs cannot take them fails at build time (``trainer validate``,
``trainer fit``), exit 2 naming the config line, instead of exit 3 once the data is
loaded."""

from trainer.config.loader import format_path
from trainer.errors import ConfigError
from trainer.config.families import datasets
from trainer.config.registry import split_spec

SPLITS = ("train", "validation", "test")


def check_builtin_shapes(cfg, model):
    """ConfigError when a built-in dataset's samples, after ``data.preprocess.x``, do
    not have the shape of the model input they go to."""
    data = cfg.get("data") or {}
    for split in SPLITS:
        spec = data.get(split)
        if not isinstance(spec, dict) or "dataset" not in spec:
            continue
        keypath = ("data", split)
        try:
            ds = datasets.get({spec["dataset"]: {k: v for k, v in spec.items()
                                                 if k != "dataset"}})
        except ConfigError as exc:
            raise ConfigError(f"{format_path(keypath)}: {exc.message}",
                              where=cfg.where(keypath)) from None
        shapes = ds.sample_shapes()
        if shapes is None:  # known only once the data is read (checked then)
            continue
        names = model.input_names
        if not isinstance(shapes, dict):
            if len(names) != 1:
                continue  # which input it feeds is the data pipeline's to report
            shapes = {names[0]: shapes}
        for index, name in enumerate(names):
            if name not in shapes:
                continue
            given = _after_steps(cfg, name, tuple(shapes[name]))
            wanted = tuple(model.graph.shapes[index])
            if given is None or _fits(given, wanted):
                continue
            at = input_keypath(cfg, name)
            steps = " after data.preprocess.x" if _steps(cfg, name) else ""
            raise ConfigError(
                f"{format_path(at)}: the model's input '{name}' takes samples of shape "
                f"{list(wanted)}, but {format_path(keypath)} (the built-in dataset "
                f"'{spec['dataset']}') gives samples of shape {list(given)}{steps}; write "
                f"{list(given)}, or add a reshape step to data.preprocess.x",
                where=cfg.where(at))


def _fits(given, wanted):
    return len(given) == len(wanted) and all(w is None or g == w
                                             for g, w in zip(given, wanted))


def _steps(cfg, name):
    section = ((cfg.get("data") or {}).get("preprocess") or {}).get("x")
    if isinstance(section, dict):
        section = section.get(name)
    return section or []


def _after_steps(cfg, name, shape):
    from trainer.config.families import preprocessing

    for spec in _steps(cfg, name):
        try:
            shape = preprocessing.get(spec).sample_shape(shape)
        except ConfigError:
            return None  # a bad step is reported where the steps are built
        if shape is None:
            return None
    return tuple(shape)


def input_keypath(cfg, name):
    """Where the config gives input ``name`` its shape."""
    model = cfg["model"]
    if isinstance(model.get("inputs"), dict) and name in model["inputs"]:
        return ("model", "inputs", name, "shape")
    for key in ("input_shape", "keras"):
        if key in model:
            return ("model", key)
    first = (model.get("layers") or [None])[0]
    if isinstance(first, dict) and len(first) == 1:
        layer, args = split_spec(first)
        if isinstance(args, dict):
            for key in ("input_shape", "batch_input_shape", "shape", "input_dim"):
                if key in args:
                    return ("model", "layers", 0, layer, key)
    return ("model", "layers", 0)
