"""``trainer evaluate``: a run's (or a config's and checkpoint's) loss and metrics on a
split of its data or on a data file."""

from pathlib import Path

from trainer.app.fit import build, check_data, load_config, load_run_config
from trainer.errors import ConfigError


SPLITS = ("train", "validation", "test")


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


def evaluate(target, checkpoint_path=None, overrides=(), data=None):
    """Evaluate a run (its config and checkpoint) on the test data, else validation.

    ``data``: ``train``, ``validation`` or ``test`` to evaluate that split of the
    config's data instead, or the path of a data file read like ``data.test`` (the
    same array names; a built-in dataset's test split is replaced by the file's
    ``x`` and ``y`` arrays)."""
    from trainer.store import checkpoint
    from trainer.data.pipeline import prepare
    from trainer.training.loop import evaluate as run_eval

    target = Path(target)
    if target.is_dir():
        cfg = load_run_config(target, overrides)  # user code found where the run began
        ckpt = Path(checkpoint_path) if checkpoint_path else target / "checkpoints" / "last.h5"
    else:
        cfg = load_config(target, overrides)
        if checkpoint_path is None:
            raise ConfigError("evaluate CONFIG needs --checkpoint FILE (or give a run folder)")
        ckpt = Path(checkpoint_path)
    if data is not None and data not in SPLITS:
        if not Path(data).is_file():
            raise ConfigError(f"--data: '{data}' is neither a split (train, validation, "
                              f"test) nor a data file")
        cfg["data"]["test"] = _data_file_source(cfg, data)
        data = "test"
    model = build(cfg)
    _, arrays = checkpoint.load(ckpt, model, with_optimizer=False)
    if data is None:
        data = "test" if "test" in cfg["data"] else "validation"
    if data != "train" and data not in cfg["data"]:
        raise ConfigError(f"nothing to evaluate on: the config has no data.{data}"
                          + (" and no data.test" if data == "validation" else ""))
    # a validation split taken from the training rows: both are needed to tell them apart
    carved = "split" in (cfg["data"].get("validation") or {})
    need = ("train", "validation") if carved and data != "test" else (data,)
    splits, _ = prepare(cfg, model.input_names, model.output_names, need=need,
                        preprocessor_state=arrays or None)
    split = splits[data]
    check_data(model, split, f"data.{data}")
    return run_eval(model, split, cfg["fit"].get("validation_batch_size")
                    or cfg["fit"]["batch_size"])
