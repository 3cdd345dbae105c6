"""``trainer export``: a run's model (its config.yaml and a checkpoint) written as a
Keras file. The formats themselves are trainer.keras_io's."""

from pathlib import Path

from trainer.errors import ConfigError
from trainer.fileio import write_text
from trainer.keras_io.export import keras2_only_note, model_json, write_h5
from trainer.keras_io.keras3 import write_keras

FORMATS = {".h5": "keras-h5", ".hdf5": "keras-h5", ".json": "keras-json", ".keras": "keras"}


def export_run(run_dir, out, fmt=None, checkpoint_path=None):
    """Write a run's model (config.yaml + a checkpoint) as a Keras file; return its path."""
    from trainer.app import fit as api
    from trainer.store import checkpoint
    from trainer.store.runs import Run, checkpoint_path as checkpoint_path_in

    run_dir, out = Path(run_dir), Path(out)
    if not (run_dir / "config.yaml").exists():
        raise ConfigError(f"{run_dir} is not a run folder (no config.yaml)")
    fmt = fmt or FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ConfigError(f"export: give --format keras, keras-h5 or keras-json (cannot "
                          f"tell from '{out.name}')")
    cfg = api.load_run_config(run_dir)
    model = api.build(cfg)
    user = [f"{layer.name} ({type(layer).__module__}:{type(layer).__name__})"
            for layer in model.user_layers()]
    if user:
        raise ConfigError(f"export: user layers have no Keras equivalent to write: "
                          f"{', '.join(user)}")
    dtype = cfg.get("dtype", "float32")
    note = keras2_only_note(out, model, dtype) if fmt != "keras" else None
    if fmt == "keras-json":
        write_text(out, model_json(model, dtype) + "\n")
        return _noted(out, note)
    ckpt = (checkpoint_path_in(run_dir, checkpoint_path) if checkpoint_path
            else Run(run_dir).model_file())
    checkpoint.load(ckpt, model, with_optimizer=False)
    if fmt == "keras":
        write_keras(model, out, dtype)
    else:
        write_h5(model, out, dtype)
    return _noted(out, note)


def _noted(out, note):
    """Give the export's note (a warning on stderr, and an event) once it is written."""
    if note:
        from trainer.keras_io.h5 import warn

        warn(note)
    return out
