"""Build application models from a config, and write weight files in the layout of
Keras's released application weights (``save_weights``: ``layer_names`` at the root, one
group per layer — input and pooling layers too — with ``weight_names`` and one dataset
per weight, ``<layer>/<weight>:0``), independently of trainer's own writer."""

from pathlib import Path

import h5py
import numpy as np

from trainer.build.builder import build_model
from trainer.config.loader import from_dict
from trainer.build.keras_model import load_weights_option

def build(folder, **model):
    """The built Model of ``model: {...}`` with its ``model.weights`` loaded."""
    cfg = from_dict({"data": {"train": {"dataset": "iris"}}, "model": model,
                     "compile": {"loss": "mse"}}, Path(folder) / "app.yaml")
    m = build_model(cfg)
    load_weights_option(cfg, m)
    return m, cfg


def write_release_file(path, model, rng, input_name="input_1"):
    """Random weights for every layer of ``model`` in Keras's release layout; returns
    {layer name: [arrays]}."""
    written = {}
    with h5py.File(path, "w") as f:
        names = [input_name] + [layer.name for layer in model.layers]
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.1.5"
        f.create_group(input_name).attrs["weight_names"] = np.array([], dtype="S")
        for layer in model.layers:
            g = f.require_group(layer.name)
            wnames = [f"{layer.name}/{n}:0" for n in layer.weight_names()]
            g.attrs["weight_names"] = np.array([n.encode() for n in wnames], dtype="S")
            arrays = []
            for full, w in zip(wnames, layer.get_weights()):
                value = rng.normal(0, 0.05, w.shape).astype(np.float32)
                if "moving_variance" in full:
                    value = np.abs(value) + 0.5
                g.create_dataset(full, data=value)
                arrays.append(value)
            written[layer.name] = arrays
    return written
