"""Pointers for Keras habits that a config writes another way.

A Keras user writes ``fit: {validation_split: 0.1}`` or ``kernel_size: (3, 3)``; the
schema alone would answer "unknown key" (suggesting ``validation_freq``) or "expected
an integer or a list". These hints say where the Keras name lives here, or how to
write the value.
"""

import re

#: (section, Keras's key) → where it lives in a config
ELSEWHERE = {
    ("fit", "validation_split"): "Keras's validation_split is written "
                                 "data.validation: {split: 0.1} here",
    ("fit", "validation_data"): "Keras's validation_data is written data.validation: "
                                "{path: ..., x: ..., y: ...} (or {dataset: ...}) here",
    ("fit", "callbacks"): "Keras's fit(callbacks=...) is the top-level list callbacks: "
                          "here (beside fit:, not inside it)",
    ("fit", "x"): "the training data is data.train here",
    ("fit", "y"): "the training data is data.train here",
    ("fit", "sample_weight"): "sample weights are data.train.sample_weight here "
                              "(an array of the data file)",
    ("compile", "callbacks"): "callbacks are the top-level list callbacks: here",
    ("compile", "epochs"): "epochs is fit.epochs",
    ("compile", "batch_size"): "batch_size is fit.batch_size",
    ("model", "optimizer"): "the optimizer is compile.optimizer",
    ("model", "loss"): "the loss is compile.loss",
    ("model", "metrics"): "metrics are compile.metrics",
    ((), "callback"): "the section is callbacks: (a list)",
    ((), "optimizer"): "the optimizer is compile.optimizer",
    ((), "loss"): "the loss is compile.loss",
    ((), "epochs"): "epochs is fit.epochs",
}


def elsewhere(path, key):
    """' Keras's validation_split is written ...' for a key that lives elsewhere, or
    None. ``path``: the key path of the mapping holding ``key`` (top level or a
    section)."""
    path = tuple(path)
    if len(path) > 1:
        return None
    hint = ELSEWHERE.get((path[0] if path else (), key))
    return f" {hint}." if hint else None


_TUPLE = re.compile(r"^\s*\(\s*([^()]*?)\s*,?\s*\)\s*$")


def tuple_hint(value):
    """' (a Python tuple: write [3, 3])' for the string '(3, 3)', else ''."""
    if not isinstance(value, str):
        return ""
    m = _TUPLE.match(value)
    if not m or not m.group(1):
        return ""
    items = [v.strip() for v in m.group(1).split(",") if v.strip()]
    return f" (a Python tuple: write [{', '.join(items)}])"
