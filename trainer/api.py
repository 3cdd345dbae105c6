"""What the commands do, as library calls: fit, evaluate, summary, validate.

The CLI parses arguments and calls these; nothing here knows about click.
"""

import copy
from pathlib import Path

import numpy as np

from trainer import config as config_lib
from trainer.errors import ConfigError, DataError, InterruptedRun, TrainerError
from trainer.registry import config_of

CHECKPOINT_STATE_VERSION = 1


def load_config(path, overrides=()):
    return config_lib.load(path, overrides)


def build(cfg):
    from trainer.builder import build_model

    return build_model(cfg)


def resolved_config(cfg, model):
    """The config with every default written out: what the run folder stores."""
    out = copy.deepcopy(dict(cfg))
    out["compile"]["optimizer"] = _clean(config_of(model.optimizer))
    if "layers" in out["model"]:
        by_spec = {layer.spec_index: layer for layer in model.layers
                   if getattr(layer, "spec_index", None) is not None}
        layers = []
        for i, spec in enumerate(out["model"]["layers"]):
            if i not in by_spec:  # an Input layer or a shared-layer call
                layers.append(spec)
                continue
            args = next(iter(spec.values())) if isinstance(spec, dict) else {}
            (name, full), = _clean(config_of(by_spec[i])).items()
            for k in ("input_shape", "input_dim", "batch_input_shape", "inputs"):
                if isinstance(args, dict) and k in args:
                    full[k] = args[k]
            layers.append({name: full})
        out["model"]["layers"] = layers
    return out


def _clean(value):
    """Drop None-valued arguments (their default is 'none') recursively."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def make_callbacks(cfg, verbose):
    from trainer.callbacks.history import History
    from trainer.callbacks.progbar import ProgbarLogger
    from trainer.registries import callbacks as registry

    history = History()
    user = []
    for i, spec in enumerate(cfg.get("callbacks") or []):
        keypath = ("callbacks", i)
        try:
            if isinstance(spec, dict) and "callback" in spec:
                from trainer.usercode import load_callback
                user.append(load_callback(spec, cfg, keypath))
            else:
                user.append(registry.get(spec))
        except ConfigError as exc:
            raise ConfigError(f"callbacks[{i}]: {exc.message}", where=cfg.where(keypath)) from None
    return history, [history, *user, ProgbarLogger(verbose=verbose)]


def fit(cfg, run_dir=None, argv=None, verbose=None, extra_callbacks=()):
    """Train from a config into a run folder. Returns (run, logs)."""
    from trainer import checkpoint
    from trainer.data.pipeline import prepare
    from trainer.runs import Run, RunRecorder, command_line, new_run_dir
    from trainer.training import Loop

    model = build(cfg)
    fit_cfg = cfg["fit"]
    splits, pre = prepare(cfg, model.input_names, model.output_names,
                          need=("train", "validation"))
    train, val = splits["train"], splits.get("validation")
    for name, split in (("data.train", train), ("data.validation", val)):
        if split is not None:
            model.check_finite_inputs(split, name)
            model.check_labels(split, name)
            check_input_shapes(model, split, name)
    if len(train) == 0:
        raise DataError("data.train holds no rows")
    from trainer.keras_io.h5 import load_weights_option
    load_weights_option(cfg, model)
    history, callbacks = make_callbacks(cfg, fit_cfg.get("verbose", "auto")
                                        if verbose is None else verbose)
    callbacks.extend(extra_callbacks)
    run = Run(run_dir or new_run_dir(cfg.get("name", "run")))
    run.create(resolved_config(cfg, model), cfg.get("seed", 0), argv or command_line())
    loop = Loop(model, train, val, callbacks,
                epochs=fit_cfg["epochs"], batch_size=fit_cfg["batch_size"],
                shuffle=fit_cfg["shuffle"], seed=cfg.get("seed", 0),
                class_weight=class_weights(fit_cfg.get("class_weight"), train),
                initial_epoch=fit_cfg.get("initial_epoch", 0),
                validation_batch_size=fit_cfg.get("validation_batch_size"),
                steps_per_epoch=fit_cfg.get("steps_per_epoch"), run=run)

    def save_last():
        checkpoint.save(run.last, model, state=train_state(loop, callbacks),
                        arrays=pre.get_state())

    recorder = RunRecorder(run, save_last)
    recorder.history = history
    loop.callbacks.callbacks.insert(1, recorder)
    try:
        logs = loop.run_fit()
    except KeyboardInterrupt:
        save_last()
        run.finish("interrupted", history_last(history))
        raise InterruptedRun(f"interrupted; a resumable checkpoint was written to {run.last}")
    except TrainerError as exc:
        run.finish("failed", history_last(history), error=str(exc))
        raise
    except BaseException as exc:
        run.finish("failed", history_last(history), error=f"internal error: {exc!r}")
        raise
    run.finish("completed", logs)
    return run, logs


def history_last(history):
    rows = history.rows()
    return {k: v for k, v in rows[-1].items() if k != "epoch"} if rows else {}


def train_state(loop, callbacks):
    return {
        "version": CHECKPOINT_STATE_VERSION,
        "epoch": loop.epoch,
        "noise_rng": loop.model.noise_rng.bit_generator.state,
        "callbacks": [{"class": type(c).__name__, "state": c.get_state()} for c in callbacks],
    }


def class_weights(spec, train):
    if spec is None:
        return None
    if spec == "balanced":
        y = next(iter(train.y.values()))
        ids = np.argmax(y, axis=-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(-1)
        ids = ids.astype(np.int64)
        counts = np.bincount(ids)
        n_classes = int((counts > 0).sum())
        return {int(c): len(ids) / (n_classes * n) for c, n in enumerate(counts) if n}
    return {int(k): float(v) for k, v in spec.items()}


def check_input_shapes(model, split, where):
    for (name, x), shape in zip(split.x.items(), model.graph.shapes[:model.graph.n_inputs]):
        if tuple(x.shape[1:]) != tuple(shape):
            raise DataError(f"{where}: input '{name}' has shape {x.shape[1:]} per sample but "
                            f"the model expects {tuple(shape)}; fix model.input_shape or add "
                            f"a reshape step to data.preprocess.x")


def evaluate(target, checkpoint_path=None, overrides=()):
    """Evaluate a run (its config and checkpoint) on the test data, else validation."""
    from trainer import checkpoint
    from trainer.data.pipeline import prepare
    from trainer.training import evaluate as run_eval

    target = Path(target)
    if target.is_dir():
        cfg = load_config(target / "config.yaml", overrides)
        ckpt = Path(checkpoint_path) if checkpoint_path else target / "checkpoints" / "last.h5"
    else:
        cfg = load_config(target, overrides)
        if checkpoint_path is None:
            raise ConfigError("evaluate CONFIG needs --checkpoint FILE (or give a run folder)")
        ckpt = Path(checkpoint_path)
    model = build(cfg)
    _, arrays = checkpoint.load(ckpt, model, with_optimizer=False)
    need = ("test",) if "test" in cfg["data"] else ("train", "validation")
    splits, _ = prepare(cfg, model.input_names, model.output_names, need=need,
                        preprocessor_state=arrays or None)
    split = splits.get("test") or splits.get("validation")
    if split is None:
        raise ConfigError("nothing to evaluate on: the config has no data.test and no "
                          "data.validation")
    name = "data.test" if "test" in splits else "data.validation"
    model.check_labels(split, name)
    check_input_shapes(model, split, name)
    return run_eval(model, split, cfg["fit"].get("validation_batch_size")
                    or cfg["fit"]["batch_size"])
