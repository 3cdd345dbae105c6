"""``trainer evaluate``: a run's (or a config's and checkpoint's) loss and metrics on a
split of its data or on a data file; the model `evaluate`, `predict` and `export` use."""

from pathlib import Path

from trainer.app.fit import build, check_data, initial_weights, load_config, load_run_config
from trainer.errors import ConfigError


SPLITS = ("train", "validation", "test")


def model_of(cfg, ckpt, command):
    """(model, preprocessing arrays) for evaluate/predict: the weights of ``ckpt``, or,
    for a config without one, the weights its model names (``model.weights``, a
    ``model.keras`` file holding weights) or else a fresh initialisation from the seed,
    with a warning. Arrays: the checkpoint's preprocessing statistics ({} to fit them
    on the training data)."""
    from trainer.store import checkpoint
    from trainer.keras_io.h5 import warn

    model = build(cfg)
    if ckpt is not None:
        _, arrays = checkpoint.load(ckpt, model, with_optimizer=False)
        return model, arrays
    if "weights" in cfg["model"]:
        initial_weights(cfg, model)
    else:
        warn(f"{command}: {cfg.path.name} names no weights (model.weights, or a "
             f"model.keras file holding them) and no --checkpoint was given; the model is "
             f"a fresh initialisation from seed {cfg.get('seed', 0)}, untrained")
    return model, {}


def _data_file_source(cfg, path):
    """``evaluate --data FILE``: a source for FILE read like the config's test source
    (else its training source): the same array names, CSV header and delimiter."""
    template = cfg["data"].get("test") or cfg["data"]["train"]
    source = {"path": str(Path(path).resolve())}
    if "dataset" in template:
        source.update(x="x", y="y")
    else:
        source.update({k: v for k, v in template.items()
                       if k in ("x", "y", "sample_weight", "lazy", "header", "delimiter")})
    return source


def final_checkpoint(target, checkpoint_path=None, overrides=(), command="evaluate"):
    """(config, checkpoint path) of the model `evaluate`, `predict` and `export` use: a
    run folder's final model (``Run.model_file``) or ``checkpoint_path`` resolved
    against the run; for a CONFIG, ``checkpoint_path`` or None (the weights its model
    names, else a fresh initialisation: ``model_of``)."""
    from trainer.store.runs import Run, checkpoint_path as checkpoint_path_in

    target = Path(target)
    if target.is_dir():
        if not (target / "config.yaml").exists():
            raise ConfigError(f"{target} is not a run folder (no config.yaml)")
        cfg = load_run_config(target, overrides)  # user code found where the run began
        ckpt = (checkpoint_path_in(target, checkpoint_path) if checkpoint_path
                else Run(target).model_file())
    else:
        cfg = load_config(target, overrides)
        ckpt = checkpoint_path_in(None, checkpoint_path) if checkpoint_path else None
    return cfg, ckpt


def evaluate(target, checkpoint_path=None, overrides=(), data=None):
    """Evaluate a run (its config and final model, see Run.model_file) on the test
    data, else validation; or a CONFIG with --checkpoint, or with the weights its model
    names (a fresh initialisation, with a warning, without any).

    ``data``: ``train``, ``validation`` or ``test`` to evaluate that split of the
    config's data instead, or the path of a data file read like ``data.test`` (the
    same array names; a built-in dataset's test split is replaced by the file's
    ``x`` and ``y`` arrays)."""
    from trainer.data.pipeline import prepare
    from trainer.data.ranks import agree
    from trainer.training.loop import evaluate as run_eval

    cfg, ckpt = final_checkpoint(target, checkpoint_path, overrides)
    if data is not None and data not in SPLITS:
        if not Path(data).is_file():
            raise ConfigError(f"--data: '{data}' is neither a split (train, validation, "
                              f"test) nor a data file")
        cfg["data"]["test"] = _data_file_source(cfg, data)
        data = "test"
    model, arrays = model_of(cfg, ckpt, "evaluate")
    if data is None:
        data = "test" if "test" in cfg["data"] else "validation"
    if data != "train" and data not in cfg["data"]:
        raise ConfigError(f"nothing to evaluate on: the config has no data.{data}"
                          + (" and no data.test" if data == "validation" else ""))
    # a validation split taken from the training rows: both are needed to tell them apart
    carved = "split" in (cfg["data"].get("validation") or {})
    need = ("train", "validation") if carved and data != "test" else (data,)
    from trainer.distributed.world import current

    world = current()  # under MPI: each rank reads and evaluates its rows of every batch
    splits, _ = prepare(cfg, model.input_names, model.output_names, need=need,
                        preprocessor_state=arrays or None, world=world)
    split = splits[data]
    agree(world, lambda: check_data(model, split, f"data.{data}", world))  # rank 0's probe
    return run_eval(model, split, cfg["fit"].get("validation_batch_size")
                    or cfg["fit"]["batch_size"], world=world)
