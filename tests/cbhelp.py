"""Small configs for the callback tests: iris, a tiny MLP, a few epochs."""

import copy

from trainer.app import fit as api
from trainer.config.loader import from_dict

BASE = {
    "name": "cb",
    "seed": 0,
    "data": {
        "train": {"dataset": "iris", "subset": "train"},
        "validation": {"dataset": "iris", "subset": "test"},
        "preprocess": {"y": [{"to_categorical": {"num_classes": 3}}]},
    },
    "model": {"input_shape": [4], "layers": [{"Dense": {"units": 8, "activation": "relu"}},
                                             {"Dense": {"units": 3, "activation": "softmax"}}]},
    "compile": {"loss": "categorical_crossentropy", "optimizer": {"SGD": {"lr": 0.05}},
                "metrics": ["accuracy"]},
    "fit": {"epochs": 4, "batch_size": 32, "verbose": 0},
}


def config(folder, callbacks=(), **changes):
    """The base config with ``callbacks`` and top-level section updates."""
    value = copy.deepcopy(BASE)
    value["callbacks"] = list(callbacks)
    for key, update in changes.items():
        if isinstance(update, dict) and isinstance(value.get(key), dict):
            value[key].update(update)
            value[key] = {k: v for k, v in value[key].items() if v is not None}
        elif update is None:
            value.pop(key, None)
        else:
            value[key] = update
    return from_dict(value, folder / "config.yaml")


def fit(folder, callbacks=(), run="run", **changes):
    cfg = config(folder, callbacks, **changes)
    return api.fit(cfg, run_dir=folder / run, verbose=0)
