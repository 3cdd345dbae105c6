"""`trainer validate`: schema check, dry build, then checks that read no data.

Each problem is a ``Problem(severity, path, message, where)``; errors make the config
invalid (exit 2), warnings are reported and pass.
"""

from dataclasses import asdict, dataclass
from pathlib import Path

from trainer.app.gates import logged_names
from trainer.errors import ConfigError
from trainer.config.registry import split_spec

ONE_HOT_LOSSES = {"categorical_crossentropy", "categorical_hinge",
                  "kullback_leibler_divergence", "cosine_proximity"}
CE_LOSSES = {"categorical_crossentropy", "sparse_categorical_crossentropy"}
ONE_HOT_STEPS = {"to_categorical", "one_hot"}


@dataclass
class Problem:
    severity: str  # "error" or "warning"
    path: str
    message: str
    where: str

    def location(self):
        """(file, line, col) from 'file:line:col', or (where, None, None)."""
        parts = self.where.rsplit(":", 2)
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            return parts[0], int(parts[1]), int(parts[2])
        return self.where, None, None

    def file_as_given(self, config_path):
        """(file, line, col) with the config's file as the user gave its path
        (``err/typo.yaml``, not the ``typo.yaml`` of messages; GitHub resolves it from
        the repository root); a problem in a ``--set`` value is the config's, without
        a line. Other files (a Keras file) stay as the message names them."""
        file, line, col = self.location()
        if config_path is None:
            return file, line, col
        given = Path(config_path)
        if file.startswith("--set "):  # a value given on the command line
            return str(given), None, None
        if file in (given.name, str(given)):
            return str(given), line, col
        return file, line, col

    def as_dict(self, config_path=None):
        file, line, col = self.file_as_given(config_path)
        return {**asdict(self), "file": file, "line": line, "col": col}

    def text(self):
        return f"{self.severity}: {self.path}: {self.message} ({self.where})"

    def github(self, config_path=None):
        file, line, col = self.file_as_given(config_path)
        loc = f"file={file}" + (f",line={line},col={col}" if line else "")
        msg = f"{self.path}: {self.message}".replace("%", "%25").replace("\n", "%0A")
        return f"::{self.severity} {loc}::{msg}"


def lint_file(path, overrides=()):
    """Every problem of a config file, without reading any data."""
    from trainer.app.fit import load_config

    try:
        cfg = load_config(path, overrides)  # a config file or a run folder
    except ConfigError as exc:
        if exc.problems:
            return [Problem("error", p, m, w) for p, m, w in exc.problems], None
        return [Problem("error", "(config)", exc.message, exc.where or str(path))], None
    return lint_config(cfg), cfg


def lint_config(cfg):
    from trainer.build.builder import build_model
    from trainer.data.shapes import check_builtin_shapes

    try:
        model = build_model(cfg)
        check_builtin_shapes(cfg, model)
    except ConfigError as exc:
        path, _, message = exc.message.partition(": ")
        if not message:
            path, message = "model", exc.message
        return [Problem("error", path, message, exc.where or cfg.where(("model",)))]
    problems = []
    try:  # user preprocessing steps are imported and checked, no data read
        from trainer.data.pipeline import make_preprocessor
        make_preprocessor(cfg, model.input_names, model.output_names)
    except ConfigError as exc:
        problems.append(Problem("error", "data.preprocess", exc.message.partition(": ")[2]
                                or exc.message, exc.where or cfg.where(("data",))))
    try:
        from trainer.app.fit import make_callbacks
        make_callbacks(cfg, 0)
    except ConfigError as exc:
        path, _, message = exc.message.partition(": ")
        problems.append(Problem("error", path, message or exc.message,
                                exc.where or cfg.where(("callbacks",))))
    for rule in (_loss_vs_activation, _labels_vs_loss, _top_k, _monitors, _expect,
                 _zero_lr):
        problems.extend(rule(cfg, model))
    return problems


def _loss_keypath(cfg, output, multi):
    loss = cfg["compile"]["loss"]
    if multi and isinstance(loss, dict) and output.name in loss:
        return ("compile", "loss", output.name)
    return ("compile", "loss")


def _last_activation(model, output_index):
    node = model.graph.producer[model.graph.outputs[output_index]]
    act = getattr(node.layer, "activation", None)
    return getattr(act, "registered_name", None)


def _loss_vs_activation(cfg, model):
    out = []
    for k, o in enumerate(model.outputs):
        from trainer.config.families import losses
        if o.loss_name not in losses:  # the user's own loss: nothing known of it
            continue
        name = losses.canonical(o.loss_name)
        logits = getattr(o.loss, "from_logits", False)
        act = _last_activation(model, k)
        keypath = _loss_keypath(cfg, o, model.multi_output)
        where = cfg.where(keypath)
        path = ".".join(str(p) for p in keypath)
        if name == "binary_crossentropy" and act == "softmax" and o.units > 1:
            out.append(Problem("warning", path, f"output '{o.name}' ends in softmax over "
                               f"{o.units} units but the loss is binary_crossentropy; use "
                               f"categorical_crossentropy, or a sigmoid output", where))
        if name in CE_LOSSES and o.units == 1:
            out.append(Problem("error", path, f"{name} on output '{o.name}' with one unit is "
                               f"always 0; use binary_crossentropy with a sigmoid", where))
        if name in CE_LOSSES | {"binary_crossentropy"} and act is not None:
            probs = "sigmoid" if name == "binary_crossentropy" else "softmax"
            if not logits and act not in (probs, "sigmoid", "softmax"):
                out.append(Problem("warning", path, f"output '{o.name}' ends in {act}, not "
                                   f"{probs}: its values are not probabilities; add "
                                   f"activation: {probs} or set from_logits: true", where))
            if logits and act in ("sigmoid", "softmax"):
                out.append(Problem("warning", path, f"from_logits is true but output "
                                   f"'{o.name}' already ends in {act}", where))
    return out


def _labels_vs_loss(cfg, model):
    from trainer.config.families import losses
    out = []
    data = cfg["data"]
    train = data.get("train", {})
    if "dataset" not in train:
        return out  # labels of files are checked when the data is read
    steps = data.get("preprocess", {}).get("y") or []
    names = {split_spec(s)[0] for s in (steps if isinstance(steps, list) else
                                        [x for v in steps.values() for x in v])
             if not (isinstance(s, dict) and "step" in s)}  # user steps: unknown
    for o in model.outputs:
        if o.loss_name in losses and losses.canonical(o.loss_name) in ONE_HOT_LOSSES and not names & ONE_HOT_STEPS:
            out.append(Problem("error", "data.preprocess.y", f"dataset '{train['dataset']}' "
                               f"gives class ids but {o.loss_name} needs one-hot labels; add "
                               f"`to_categorical` to data.preprocess.y, or use "
                               f"sparse_categorical_crossentropy",
                               cfg.where(("data", "preprocess")) if "preprocess" in data
                               else cfg.where(("data",))))
    return out


def _top_k(cfg, model):
    out = []
    for o in model.outputs:
        for i, m in enumerate(o.metrics):
            k = getattr(m, "k", None)
            if k is not None and k >= o.units:
                out.append(Problem("warning", f"compile.metrics[{i}]", f"{m.name} with k={k} "
                                   f"on output '{o.name}' of {o.units} classes is always 1",
                                   cfg.where(("compile", "metrics"))))
    return out


def _monitors(cfg, model):
    out = []
    names = logged_names(cfg, model)
    for i, spec in enumerate(cfg.get("callbacks") or []):
        if not isinstance(spec, dict) or "callback" in spec:
            continue
        cb_name, args = split_spec(spec)
        monitor = args.get("monitor") if isinstance(args, dict) else None
        if monitor is None and cb_name in ("EarlyStopping", "ReduceLROnPlateau") or (
                cb_name == "ModelCheckpoint" and isinstance(args, dict)
                and args.get("save_best_only")):
            monitor = monitor or "val_loss"
        if monitor is not None and monitor not in names:
            from trainer.config.registry import suggest
            out.append(Problem("error", f"callbacks[{i}].{cb_name}.monitor",
                               f"'{monitor}' is never logged.{suggest(monitor, names)} "
                               f"Logged: {', '.join(names)}", cfg.where(("callbacks", i))))
    return out


def _expect(cfg, model):
    from trainer.config.registry import suggest
    names = logged_names(cfg, model)
    return [Problem("error", f"expect.{k}", f"'{k}' is never logged.{suggest(k, names)} "
                    f"Logged: {', '.join(names)}", cfg.where(("expect", k)))
            for k in (cfg.get("expect") or {}) if k not in names]


def _zero_lr(cfg, model):
    from trainer.config.loader import format_path
    from trainer.optimizers.base import zero_lr_warning

    found = zero_lr_warning(cfg, model.optimizer)
    if found is None:
        return []
    keypath, message = found
    return [Problem("warning", format_path(keypath), message, cfg.where(keypath))]
