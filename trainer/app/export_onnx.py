"""`trainer export RUN|CONFIG model.onnx`: the model a command would use → ONNX.

A run folder gives its final model (the checkpoint `evaluate` loads:
``api.final_checkpoint``); a CONFIG gives the model it builds, with the weights it
names (an imported Keras model) or untrained, or those of ``--checkpoint``. The
format itself is trainer/onnx_io."""

from pathlib import Path

from trainer.errors import ConfigError

INSTALL = "pip install 'trainer[onnx]'"


def export_onnx(target, out, checkpoint_path=None, with_preprocessing=False):
    """Write ``target``'s model to ``out`` as ONNX; return the path."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ConfigError(f"export to ONNX needs the onnx package: {INSTALL}") from None
    from trainer.app import fit as api
    from trainer.store import checkpoint
    from trainer.app import evaluate as evaluate_lib
    from trainer.onnx_io import export_model, refuse_unsupported
    from trainer.training.resume import config_hash

    target, out = Path(target), Path(out)
    if target.is_dir() and not (target / "config.yaml").exists():
        raise ConfigError(f"{target} is not a run folder (no config.yaml)")
    if target.is_dir() or checkpoint_path is not None:
        cfg, ckpt = evaluate_lib.final_checkpoint(target, checkpoint_path, command="export")
    else:
        cfg, ckpt = api.load_config(target), None
    model = api.build(cfg)
    refuse_unsupported(model)  # before reading any weights
    if ckpt is None:  # a CONFIG: the weights it names (an imported model), else untrained
        api.initial_weights(cfg, model)
        state, arrays = None, {}
    else:
        state, arrays = checkpoint.load(ckpt, model, with_optimizer=False)
    metadata = {"run_id": target.name if target.is_dir() else "",
                "config_hash": (state or {}).get("config_hash") or _hash(cfg, config_hash),
                "model_name": model.name,
                "with_preprocessing": str(bool(with_preprocessing)).lower()}
    preprocess = _preprocess(cfg, model, arrays) if with_preprocessing else None
    return export_model(model, out, metadata, preprocess)


def _hash(cfg, config_hash):
    import json

    return config_hash(json.loads(json.dumps(dict(cfg), default=str)))


def _preprocess(cfg, model, arrays):
    """{input name: [fitted steps]} of the run's preprocess section (x side)."""
    from trainer.data.pipeline import Preprocessor

    section = cfg["data"].get("preprocess", {}) if "data" in cfg else {}
    pre = Preprocessor(section, model.input_names, [])
    if arrays:
        pre.set_state(arrays)
    return pre.steps["x"]
