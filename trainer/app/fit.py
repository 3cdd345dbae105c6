"""`trainer fit` as a library call: the run lifecycle (config, model, data, the loop,
the run folder), the callbacks a run gets, save_last, train_until_done; and the data
checks that evaluate and predict share.

The CLI parses arguments and calls these; nothing here knows about click.
"""

import contextlib
import copy
import errno
from pathlib import Path

import numpy as np

from trainer.config import loader as config_lib
from trainer.data.shapes import check_builtin_shapes
from trainer.errors import (ConfigError, DataError, DivergedError, InterruptedRun, Terminated,
                            TerminatedRun, TrainerError, out_of_memory)
from trainer.config.registry import config_of

def load_config(path, overrides=()):
    """A config file, or the config of a run folder (``load_run_config``): every
    command that takes a CONFIG takes a RUN too."""
    if Path(path).is_dir():
        return load_run_config(path, overrides)
    return config_lib.load(path, overrides)


def build(cfg):
    from trainer.build.builder import build_model

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
            if i not in by_spec or (isinstance(spec, dict) and "layer" in spec):
                layers.append(spec)  # an Input layer, a shared-layer call, a user layer
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
    model = out["model"]
    for key in ("weights", "keras"):
        if isinstance(model.get(key), str):
            model[key] = str(config_lib.resolve_path(cfg, model[key]).resolve())
    if isinstance(model.get("weights"), dict) and "path" in model["weights"]:
        model["weights"]["path"] = str(config_lib.resolve_path(
            cfg, model["weights"]["path"]).resolve())


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
    from trainer.config.families import callbacks as registry
    from trainer.config.usercomponents import using
    from trainer.runfiles import check_output

    history = History()
    user = []
    for i, spec in enumerate(cfg.get("callbacks") or []):
        keypath = ("callbacks", i)
        try:
            if isinstance(spec, dict) and "callback" in spec:
                from trainer.callbacks.base import Callback
                from trainer.config.usercode import instantiate

                callback = instantiate(spec, "callback", Callback, cfg)
            else:
                with using(cfg):  # a user schedule of LearningRateScheduler
                    callback = registry.get(spec)
            resolve = getattr(callback, "resolve_user_code", None)
            if resolve is not None:  # functions it names (LambdaCallback), imported now
                resolve(cfg.folder if getattr(cfg, "path", None) else None)
        except ConfigError as exc:
            raise ConfigError(f"callbacks[{i}]: {exc.message}", where=cfg.where(keypath)) from None
        callback.where = cfg.where(keypath)
        for key, path, folder in callback.outputs():  # never one of the run's own files
            check_output(path, f"callbacks[{i}].{key}", cfg.where((*keypath, *key.split("."))),
                         folder)
        user.append(callback)
    for kind in (ModelCheckpoint, EarlyStopping):
        first = next((c for c in user if isinstance(c, kind)), None)
        if first is not None:
            first.writes_best = True
            break
    if not any(isinstance(c, ProgbarLogger) for c in user):
        user.append(ProgbarLogger(verbose=verbose))
    return history, [history, *user]


def load_run_config(run_dir, overrides=()):
    """The config a run was trained with (its config.yaml); relative data paths stay
    relative to the folder of the config the run was started from."""
    from trainer.store.runs import Run

    run = Run(run_dir).require()
    cfg = load_config(run.path / "config.yaml", overrides)
    folder = run.read_meta().get("config_folder")
    if folder:
        cfg.path = Path(folder) / cfg.path.name
    return cfg


def fit(cfg, run_dir=None, argv=None, verbose=None, resume=None, force=False, callbacks=(),
        expect=None):
    """Train from a config into a run folder. Returns (run, logs).

    ``resume``: a run folder to continue from its newest valid checkpoint (from the
    beginning when it never wrote one); ``cfg`` may differ from the run's config only in
    safe keys (trainer.training.resume), unless ``force``. ``run_dir``: a new folder, or
    one holding only an earlier run that ``force`` replaces (never a user's files).
    ``callbacks``: extra Callback instances, after the config's (library use, tests).
    ``expect``: the gates to be checked after training (name → condition); a name the
    run will never log is refused before anything is read or trained.
    """
    from trainer.runfiles import VALIDATION_ROWS, check_new
    from trainer.store.runs import Run, command_line, new_run_dir
    from trainer.training.resume import ResumePoint

    from trainer.distributed.world import current

    argv = argv or command_line()
    world = current()
    root = world is None or world.is_root
    with contextlib.ExitStack() as held:
        def prepare():
            model = build(cfg)
            check_builtin_shapes(cfg, model)  # before anything is read
            warn_zero_lr(cfg, model)
            # callbacks are built before any data is read: a bad one fails first
            history, cbs = make_callbacks(cfg, cfg["fit"].get("verbose", "auto")
                                          if verbose is None else verbose)
            if expect:
                from trainer.app import gates
                gates.check_logged(expect, gates.logged_names(cfg, model), cfg)
            resolved = resolved_config(cfg, model)
            resolved["callbacks"] = resolved_callbacks(cfg, cbs[1:])
            return model, history, cbs, resolved

        if world is None:
            model, history, cbs, resolved = prepare()
        else:  # a config error is every rank's: reported once, by rank 0
            from trainer.distributed.startup import together

            model, history, cbs, resolved = together(world, prepare)
        if world is not None:
            from trainer.app import mpi

            mpi.check_agreement(world, resolved)
            mpi.check_batch(world, cfg)
            if not root:  # rank 0 owns the run's files: progress, logs, checkpoints
                cbs = [history]
        point = None

        def open_run():  # rank 0 (or the one process) first; then the other ranks read
            nonlocal point, run
            if resume is None and run_dir is not None:  # refused before any data is read
                check_new(run_dir, force)
            if resume is not None:
                run = Run(resume).require()
                if root:
                    held.enter_context(run.lock())
                point = ResumePoint.find(run, resolved, force,
                                         warn=None if root else (lambda message: None))

        run = None
        if world is None:
            open_run()
        else:
            from trainer.distributed.startup import together

            together(world, open_run if root else (lambda: None))
            together(world, (lambda: None) if root else open_run)
        from_checkpoint = point is not None and point.path is not None

        def read_data():
            data = fit_data(cfg, model, point.arrays if from_checkpoint else None, world)
            if from_checkpoint:
                from trainer.store import checkpoint
                checkpoint.load(point.path, model)
            elif "weights" in cfg["model"]:
                initial_weights(cfg, model)
            return data

        train, val, pre = read_data() if world is None else together(world, read_data)
        if point is None and root:
            run = Run(run_dir or new_run_dir(cfg.get("name", "run"))).claim(force)
            held.enter_context(run.lock())
        if not root:
            from trainer.app.mpi import Bystander
            run = Bystander(run.path if run is not None else None)
        world_info = None if world is None else mpi.world_meta(world)
        if world_info is not None and root:
            mpi.announce(world_info)

        def start():
            if point is None:
                run.create(resolved, cfg.get("seed", 0), argv, config_folder=cfg.folder)
            else:
                run.reopen(resolved, argv, point.summary(),
                           fresh=run.new_meta(cfg.get("seed", 0), argv, cfg.folder))
            if world_info is not None:  # the world of the latest start (or resume)
                run.meta["world"] = world_info
                run.write_meta()
            if not from_checkpoint and val is not None and val.rows is not None:
                run.write_array(VALIDATION_ROWS, val.rows)  # the rows validation took

        loop = make_loop(cfg, model, train, val, [*cbs, *(callbacks if root else ())], run,
                         world)
        if root:
            loop.save = lambda: save_last(run, loop, pre, history, resolved)
            loop.save_final = lambda: save_final(run, model, pre)
        return run, train_until_done(loop, run, history, point, start if root else None)


def warn_zero_lr(cfg, model):
    """``lr: 0`` is valid (as in Keras) but trains nothing: one warning line."""
    from trainer.config.loader import format_path
    from trainer.keras_io.h5 import warn
    from trainer.optimizers.base import zero_lr_warning

    found = zero_lr_warning(cfg, model.optimizer)
    if found is not None:
        keypath, message = found
        warn(f"{format_path(keypath)}: {message} ({cfg.where(keypath)})")


def fit_data(cfg, model, preprocessor_state=None, world=None):
    """(train, validation, preprocessor), checked against the model. A resume passes
    the checkpoint's preprocessing statistics instead of fitting them again. Under MPI
    (``world``) each rank reads its share of lazy files (trainer.data.ranks)."""
    from trainer.data.pipeline import prepare

    splits, pre = prepare(cfg, model.input_names, model.output_names,
                          need=("train", "validation"),
                          preprocessor_state=preprocessor_state, world=world)
    train, val = splits["train"], splits.get("validation")
    for name, split in (("data.train", train), ("data.validation", val)):
        if split is not None:
            check_data(model, split, name, world)
    if len(train) == 0:
        raise DataError("data.train holds no rows")
    return train, val, pre


def initial_weights(cfg, model):
    """``model.weights``: a path, or {path, by_name, skip_mismatch} (Keras semantics)."""
    from trainer.build.keras_model import load_weights_option

    load_weights_option(cfg, model)


def make_loop(cfg, model, train, val, callbacks, run, world=None):
    from trainer.training.loop import Loop

    fit_cfg = cfg["fit"]
    return Loop(model, train, val, callbacks,
                epochs=fit_cfg["epochs"], batch_size=fit_cfg["batch_size"],
                shuffle=fit_cfg["shuffle"], seed=cfg.get("seed", 0),
                class_weight=class_weights(fit_cfg.get("class_weight"), train, world),
                initial_epoch=fit_cfg.get("initial_epoch", 0),
                validation_batch_size=fit_cfg.get("validation_batch_size"),
                validation_freq=fit_cfg.get("validation_freq", 1),
                steps_per_epoch=fit_cfg.get("steps_per_epoch"),
                checkpoint_every=fit_cfg.get("checkpoint_every"), run=run, world=world,
                accumulate_steps=fit_cfg.get("accumulate_steps", 1),
                allreduce_dtype=fit_cfg.get("allreduce_dtype", "float64"))


def save_last(run, loop, pre, history, resolved):
    """checkpoints/last.h5 (the one it replaces kept as last.prev.h5), then
    history.csv: a crash between the two leaves history.csv behind the checkpoint,
    and a resume rewrites it from the checkpoint's history."""
    from trainer.store import checkpoint
    from trainer.fileio import WriteError
    from trainer.training.resume import config_hash

    if not run.present():  # atomic writes would create the folder again
        raise WriteError(f"the run folder {run.path} was deleted or moved while the run "
                         f"was training; stopped before writing a checkpoint")
    state, arrays = loop.get_state()
    checkpoint.save(run.last, loop.model, keep_previous=run.previous, root=run.path,
                    state={"version": checkpoint.FORMAT,
                           "config_hash": config_hash(resolved), "loop": state},
                    arrays={**pre.get_state(), **arrays})
    run.write_history(history.rows())


def save_final(run, model, pre):
    """checkpoints/final.h5: the model as fit leaves it (see Run.final), weights and
    preprocessing statistics, written atomically."""
    from trainer.store import checkpoint

    checkpoint.save(run.final, model, state={"version": checkpoint.FORMAT, "final": True},
                    arrays=pre.get_state(), root=run.path)


def train_until_done(loop, run, history, point=None, start=None):
    """Start the run (``start``: write run.json and config.yaml), run the loop
    (continuing from ``point``, a ResumePoint); on SIGINT/SIGTERM (honoured at a step
    boundary) write last.h5 and exit 130/143; record how the run ended in run.json."""
    from trainer.training.resume import sigterm_as_interrupt

    with sigterm_as_interrupt():  # signals while the run records how it ended: ignored
        return _train_until_done(loop, run, history, point, start)


def _train_until_done(loop, run, history, point, start):
    from trainer.training.resume import stop_at_boundary

    started = False  # until then, the loop's state is not the run's
    try:
        if start is not None:
            start()
        if point is not None and point.state is not None:
            loop.begin(point.state["loop"], point.arrays)
            run.write_history(history.rows())  # drops rows of a later, lost checkpoint
        else:
            loop.begin()
        started = True
        with stop_at_boundary(loop):
            logs = loop.run_epochs()
            if (point is None or point.state is None) and loop.saved_at is None:
                loop.checkpoint()  # no epoch to train: the built model is the run's
    except KeyboardInterrupt as exc:
        where = "the checkpoint of the last epoch or step boundary was kept"
        if started and loop.at_boundary:
            loop.checkpoint()
            at = f"after epoch {loop.epoch}" if loop.step == 0 else \
                f"after step {loop.step} of epoch {loop.epoch + 1}"
            where = f"a resumable checkpoint was written {at}"
        run.finish("interrupted", history_last(history))
        error = TerminatedRun if isinstance(exc, Terminated) else InterruptedRun
        error = error(f"{'terminated' if error is TerminatedRun else 'interrupted'}; "
                      f"{where}; continue with `trainer fit --resume {run.path}`")
        # under MPI, every rank stopped at the same boundary (Loop.agree)
        error.agreed = started and getattr(loop, "honoured", False)
        raise error from None
    except DivergedError as exc:
        run.finish("diverged", history_last(history), error=str(exc))
        exc.agreed = True  # the global batch's loss: every rank sees it
        raise
    except TrainerError as exc:
        _finish_failed(run, history, str(exc))
        raise
    except OSError as exc:  # a callback's own file (CSVLogger, TensorBoard) not written
        error = _write_error(run, exc)
        if error is None:
            _finish_failed(run, history, f"internal error: {exc!r}")
            raise
        _finish_failed(run, history, str(error))
        raise error from None
    except MemoryError as exc:  # a config's sizes, not a bug: exit 2, checkpoint kept
        error = out_of_memory(exc)
        _finish_failed(run, history, str(error))
        raise error from None
    except BaseException as exc:
        from trainer.config.usercode import blame

        run.finish("failed", history_last(history),
                   error=blame(exc) or f"internal error: {exc!r}")
        raise
    logs = final_logs(history, loop) or logs
    if hasattr(loop, "save_final"):
        loop.save_final()
    run.finish("completed", logs)
    return logs


def final_logs(history, loop):
    """What the run reports: the logs of the model fit ends with. That is the last
    epoch's, unless a callback (EarlyStopping restore_best_weights) put back an earlier
    epoch's weights: then that epoch's logs (each value from the last epoch up to it
    that logged it)."""
    restored = [c.restored_epoch for c in loop.callbacks
                if getattr(c, "restored_epoch", None) is not None]
    rows = history.rows()
    if restored:
        rows = [r for r in rows if r["epoch"] <= restored[-1]]
    last = {}
    for row in rows:
        last.update((k, v) for k, v in row.items() if k != "epoch")
    return last


def _write_error(run, exc):
    """A WriteError for an OSError that says the run folder cannot be written (gone,
    full, read-only); None for any other OSError."""
    from trainer.fileio import WRITE_ERRNOS, WriteError

    if not run.present():
        return WriteError(f"the run folder {run.path} was deleted or moved while the run "
                          f"was training; stopped ({exc.strerror or exc})")
    if exc.errno in WRITE_ERRNOS:
        name = f" {exc.filename}" if exc.filename else ""
        return WriteError(f"could not write{name}: {exc.strerror or exc}; the last "
                          f"checkpoint written is kept")
    if exc.errno == errno.ENOENT and exc.filename and Path(exc.filename).absolute() \
            .is_relative_to(run.path.absolute()):
        # a file of the run (a callback's CSV) removed under the running fit, the folder
        # itself next: the same WriteError as a deleted folder, not an internal error
        return WriteError(f"{exc.filename} was deleted while the run was training; "
                          f"stopped (the last checkpoint written is kept)")
    return None


def _finish_failed(run, history, error):
    """Record the failure in run.json, if the run folder can still be written (it may
    be the very problem): never recreate a deleted folder, never hide the first error."""
    from trainer.fileio import WriteError

    if run.present():
        with contextlib.suppress(WriteError):
            run.finish("failed", history_last(history), error=error)


def history_last(history):
    """Each logged value of the last epoch that logged it (with ``validation_freq``
    the val_ values come from the last epoch that validated)."""
    last = {}
    for row in history.rows():
        last.update((k, v) for k, v in row.items() if k != "epoch")
    return last


def class_weights(spec, train, world=None):
    """``balanced``: n_samples / (n_classes · count(class)), the formula of Keras's and
    scikit-learn's compute_class_weight('balanced'), over the classes present."""
    if spec is None:
        return None
    if spec == "balanced":
        ids = train.labels(world).astype(np.int64)
        counts = np.bincount(ids)
        n_classes = int((counts > 0).sum())
        return {int(c): len(ids) / (n_classes * n) for c, n in enumerate(counts) if n}
    return {int(k): float(v) for k, v in spec.items()}


def check_data(model, split, where, world=None):
    """NaN/Inf, labels and input shapes, before training. A lazy split is checked on its
    first rows now (under MPI by rank 0) and then on every batch as it is read."""
    from trainer.data.pipeline import probes

    if probes(split, world):
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
