"""What the commands do, as library calls: fit, evaluate, summary, validate.

The CLI parses arguments and calls these; nothing here knows about click.
"""

import copy
from pathlib import Path

import numpy as np

from trainer import config as config_lib
from trainer.errors import ConfigError, DataError, DivergedError, InterruptedRun, TrainerError
from trainer.registry import config_of

CHECKPOINT_STATE_VERSION = 1


def load_config(path, overrides=()):
    return config_lib.load(path, overrides)


def build(cfg):
    from trainer.builder import build_model

    return build_model(cfg)


def resolved_config(cfg, model):
    """The config with every default written out: what the run folder stores."""
    from trainer.data.sources import absolute_paths

    out = copy.deepcopy(dict(cfg))
    out["data"] = absolute_paths(cfg, out["data"])
    _absolute_model_paths(out, cfg)
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


def _absolute_model_paths(out, cfg):
    """Model file paths made absolute, like the data paths (see absolute_paths)."""
    for key in ("weights", "keras"):
        if isinstance(out["model"].get(key), str):
            out["model"][key] = str(config_lib.resolve_path(cfg, out["model"][key]).resolve())


def _clean(value):
    """Drop None-valued arguments (their default is 'none') recursively."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def resolved_callbacks(cfg, built):
    """The config's callbacks with their defaults written out (user code as written)."""
    out = []
    for spec, callback in zip(cfg.get("callbacks") or [], built):
        user_code = isinstance(spec, dict) and "callback" in spec
        out.append(copy.deepcopy(spec) if user_code else _clean(config_of(callback)))
    return out


def make_callbacks(cfg, verbose):
    """History first, then the config's callbacks in order, then the progress bar
    (unless the config lists its own ProgbarLogger). The first ModelCheckpoint (else
    the first EarlyStopping) writes checkpoints/best.h5."""
    from trainer.callbacks.early_stopping import EarlyStopping
    from trainer.callbacks.history import History
    from trainer.callbacks.model_checkpoint import ModelCheckpoint
    from trainer.callbacks.progbar import ProgbarLogger
    from trainer.registries import callbacks as registry

    history = History()
    user = []
    for i, spec in enumerate(cfg.get("callbacks") or []):
        keypath = ("callbacks", i)
        try:
            if isinstance(spec, dict) and "callback" in spec:
                from trainer.usercode import load_callback
                callback = load_callback(spec, cfg, keypath)
            else:
                callback = registry.get(spec)
        except ConfigError as exc:
            raise ConfigError(f"callbacks[{i}]: {exc.message}", where=cfg.where(keypath)) from None
        callback.where = cfg.where(keypath)
        user.append(callback)
    for kind in (ModelCheckpoint, EarlyStopping):
        first = next((c for c in user if isinstance(c, kind)), None)
        if first is not None:
            first.writes_best = True
            break
    if not any(isinstance(c, ProgbarLogger) for c in user):
        user.append(ProgbarLogger(verbose=verbose))
    return history, [history, *user]


def fit(cfg, run_dir=None, argv=None, verbose=None, extra_callbacks=()):
    """Train from a config into a run folder. Returns (run, logs)."""
    from trainer import checkpoint
    from trainer.data.pipeline import prepare
    from trainer.runs import Run, RunRecorder, command_line, new_run_dir
    from trainer.training import Loop

    model = build(cfg)
    fit_cfg = cfg["fit"]
    # callbacks are built before any data is read: a bad one fails first
    history, callbacks = make_callbacks(cfg, fit_cfg.get("verbose", "auto")
                                        if verbose is None else verbose)
    callbacks.extend(extra_callbacks)
    splits, pre = prepare(cfg, model.input_names, model.output_names,
                          need=("train", "validation"))
    train, val = splits["train"], splits.get("validation")
    for name, split in (("data.train", train), ("data.validation", val)):
        if split is not None:
            check_data(model, split, name)
    if "weights" in cfg["model"]:
        import h5py
        wpath = config_lib.resolve_path(cfg, cfg["model"]["weights"])
        try:
            with h5py.File(wpath, "r") as f:
                checkpoint.read_weights(f, model, wpath)
        except (FileNotFoundError, OSError) as exc:
            raise DataError(f"model.weights: cannot read {wpath}: {exc}") from None
    run = Run(run_dir or new_run_dir(cfg.get("name", "run")))
    resolved = resolved_config(cfg, model)
    resolved["callbacks"] = resolved_callbacks(cfg, callbacks[1:])
    run.create(resolved, cfg.get("seed", 0), argv or command_line())
    if val is not None and val.rows is not None:  # which training rows validation took
        np.save(run.path / "validation_rows.npy", val.rows, allow_pickle=False)
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
    # after every callback's on_epoch_end, so last.h5 holds their state for that epoch
    loop.callbacks.callbacks.append(recorder)
    try:
        logs = loop.run_fit()
    except KeyboardInterrupt:
        save_last()
        run.finish("interrupted", history_last(history))
        raise InterruptedRun(f"interrupted; a resumable checkpoint was written to {run.last}")
    except DivergedError as exc:
        run.finish("diverged", history_last(history), error=str(exc))
        raise
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
    """``balanced``: n_samples / (n_classes · count(class)), the formula of Keras's and
    scikit-learn's compute_class_weight('balanced'), over the classes present."""
    if spec is None:
        return None
    if spec == "balanced":
        ids = train.labels().astype(np.int64)
        counts = np.bincount(ids)
        n_classes = int((counts > 0).sum())
        return {int(c): len(ids) / (n_classes * n) for c, n in enumerate(counts) if n}
    return {int(k): float(v) for k, v in spec.items()}


def check_data(model, split, where):
    """NaN/Inf, labels and input shapes, before training. A lazy split is checked on its
    first rows now and then on every batch as it is read."""
    probe = split.probe()
    model.check_finite_inputs(probe, where)
    model.check_labels(probe, where)
    check_input_shapes(model, probe, where)
    if split.lazy:
        split.check = lambda xs, ys, rows: _check_batch(model, split, where, xs, ys, rows)


def _check_batch(model, split, where, xs, ys, rows):
    from trainer.data.pipeline import Split

    for name, x in zip(split.x, xs):
        if x.dtype.kind == "f":
            bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
            if bad.any():
                first = int(np.sort(rows[bad])[0])
                if split.rows is not None:  # a row number of the file, not of the split
                    first = int(split.rows[first])
                raise DataError(f"{where}: input '{name}' holds NaN/Inf values in "
                                f"{int(bad.sum())} rows of a batch (first in row {first})")
    model.check_labels(Split({}, dict(zip(split.y, ys))), where)


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
    check_data(model, split, name)
    return run_eval(model, split, cfg["fit"].get("validation_batch_size")
                    or cfg["fit"]["batch_size"])
