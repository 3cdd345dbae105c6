"""Do the labels fit the loss (and metrics)? Checked once before training, so a label
array that does not fit stops with a message naming both shapes and the fix.

Each loss and metric states its contract: ``labels`` ("dense": the output's shape;
"sparse": class ids), ``label_range`` (closed range of values, or None) and
``categorical`` (labels are rows over classes, so class ids get a hint).
"""

import numpy as np


def _shape(shape):
    """(None, 10), (1797,), (N, 4, 10): how shapes read in messages."""
    inner = ", ".join(str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def label_problem(contract, y, out_shape, output, what):
    """A message saying why labels ``y`` do not fit ``contract`` (a loss or metric)
    for an output of per-sample shape ``out_shape``, or None when they fit."""
    out_shape = tuple(out_shape)
    if y.dtype.kind in "fc" and y.size and not np.isfinite(y).all():
        rows = ~np.isfinite(y.reshape(len(y), -1)).all(axis=1)
        return (f"the labels for output '{output}' hold NaN or Inf (first in row "
                f"{int(np.argmax(rows))})")
    if y.dtype.kind not in "biuf":
        return f"the labels for output '{output}' must be numbers, got dtype {y.dtype}"
    check = _sparse if contract.labels == "sparse" else _dense
    return check(contract, y, out_shape, output, what)


def _dense(contract, y, out_shape, output, what):
    ours = f"output '{output}' has shape {_shape((None, *out_shape))}"
    theirs = f"the labels have shape {_shape(y.shape)}"
    k = out_shape[-1] if out_shape else 1
    fits = tuple(y.shape[1:]) == out_shape or (y.ndim == 1 and out_shape == (1,))
    if not fits:
        ids_like = tuple(y.shape[1:]) in (out_shape[:-1], (*out_shape[:-1], 1)) and k > 1
        if ids_like and (contract.categorical or contract.label_range is not None):
            return (f"{ours} but {theirs}: these look like class ids, and {what} wants "
                    f"one-hot rows of width {k}. Add `to_categorical` (num_classes: {k}) "
                    f"to data.preprocess.y, or use sparse_categorical_crossentropy")
        if y.ndim == len(out_shape) + 1 and tuple(y.shape[1:-1]) == out_shape[:-1]:
            return (f"{ours} but {theirs}: labels of width {y.shape[-1]} for {k} output "
                    f"units. Make the last layer's units {y.shape[-1]}, or if the labels are "
                    f"one-hot from `to_categorical`, set its num_classes to {k}")
        return (f"{ours} but {theirs}; {what} wants labels of shape "
                f"{_shape(('N', *out_shape))}")
    if contract.categorical and k == 1:  # Keras 2 refuses this too
        return (f"{ours}: {what} over a single unit is constant, and labels of shape "
                f"{_shape(y.shape)} look like class ids. For two classes use a sigmoid "
                f"unit with binary_crossentropy; for more, one unit per class (softmax) "
                f"with sparse_categorical_crossentropy, or `to_categorical` with "
                f"categorical_crossentropy")
    if contract.label_range is not None and y.size:
        lo, hi = contract.label_range
        y_min, y_max = y.min(), y.max()
        if y_min < lo or y_max > hi:
            hint = ""
            if y_min >= 0 and np.all(np.mod(y, 1) == 0) and k == 1:
                hint = (" — these look like class ids: for several classes give the last "
                        "layer one unit per class (softmax) and use "
                        "sparse_categorical_crossentropy, or `to_categorical` with "
                        "categorical_crossentropy")
            elif y_min >= 0 and np.all(np.mod(y, 1) == 0):
                hint = (" — these look like class ids: add `to_categorical` to "
                        "data.preprocess.y, or use sparse_categorical_crossentropy")
            return (f"{what} wants labels in [{lo:g}, {hi:g}], but the labels for output "
                    f"'{output}' (shape {_shape(y.shape)}, output shape "
                    f"{_shape((None, *out_shape))}) hold values in [{y_min:g}, {y_max:g}]{hint}")
    return None


def _sparse(contract, y, out_shape, output, what):
    ours = f"output '{output}' has shape {_shape((None, *out_shape))}"
    theirs = f"the labels have shape {_shape(y.shape)}"
    k = out_shape[-1]
    ids_shape = out_shape[:-1]
    fits = tuple(y.shape[1:]) in (ids_shape, (*ids_shape, 1))
    if not fits:
        if tuple(y.shape[1:]) == out_shape and k > 1:
            return (f"{ours} but {theirs}: these look like one-hot rows, and {what} "
                    f"wants class ids of shape {_shape(('N', *ids_shape))}. For one-hot "
                    f"labels use categorical_crossentropy / categorical_accuracy, or drop "
                    f"`to_categorical` from data.preprocess.y")
        return (f"{ours} but {theirs}; {what} wants class ids of shape "
                f"{_shape(('N', *ids_shape))}")
    if y.dtype.kind == "f" and y.size and not np.all(np.mod(y, 1) == 0):
        return (f"{what} wants whole-number class ids, but the labels (shape "
                f"{_shape(y.shape)}) hold fractions; for probabilities per class use "
                f"categorical_crossentropy with labels of shape {_shape(('N', *out_shape))}")
    if y.size and (y.min() < 0 or y.max() >= k):
        return (f"{ours} ({k} classes) but the labels (shape {_shape(y.shape)}) hold class "
                f"ids in [{y.min():g}, {y.max():g}]; {what} wants ids in [0, {k - 1}]. "
                f"Make the last layer's units at least {int(y.max()) + 1}")
    return None
