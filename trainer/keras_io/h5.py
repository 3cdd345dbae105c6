"""Keras's HDF5 weight layout: read into a model by layer name (or in order), write.
(Keras 3's native ``.weights.h5`` layout is read by native.py, through ``read_weights``.)

The layout Keras 2 and Keras 3 (legacy ``.h5``) share, either at the file root
(``save_weights``) or under ``model_weights/`` (``save``):

    attrs: layer_names = [b"dense", b"dropout", ...], keras_version, backend
    <layer>/            attrs: weight_names = [b"dense/kernel:0", b"dense/bias:0"]
    <layer>/<weight name>   one dataset per weight, the name as written in weight_names
                            (Keras 2 ``dense/kernel:0``, Keras 3 ``sequential/dense/kernel``)

Attributes larger than HDF5's 64 KB header limit are split as ``layer_names0``,
``layer_names1``, ... (Keras does the same). Strings may be stored as bytes or str.
A layer's weights are matched in Keras order (trainable then non-trainable:
``kernel, bias``; BatchNormalization ``gamma, beta, moving_mean, moving_variance``;
recurrent layers ``kernel, recurrent_kernel, bias`` in Keras gate order), not by
their names, as Keras does.
"""

import sys

import numpy as np

from trainer.errors import ConfigError, DataError
from trainer.keras_io.h5limits import attr, read_dataset

KERAS_VERSION = "2.15.0"
HEADER_LIMIT = 64512  # bytes; larger attributes are chunked (Keras's constant)


def decode(values):
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in np.atleast_1d(values)]


def read_list_attr(group, name):
    """A list-of-strings attribute, whole or in Keras's numbered chunks; [] if absent.
    Each attribute's size is checked before it is read (trainer/keras_io/h5limits.py)."""
    label = f"{group.file.filename}:{group.name}"
    if name in group.attrs:
        return decode(attr(group, name, label))
    out, k = [], 0
    while f"{name}{k}" in group.attrs:
        out += decode(attr(group, f"{name}{k}", label))
        k += 1
    return out


def write_list_attr(group, name, values):
    data = np.array([v.encode("utf8") for v in values], dtype="S")
    chunks = max(1, int(np.ceil(data.nbytes / HEADER_LIMIT)))
    if chunks == 1:
        group.attrs[name] = data
        return
    for k, part in enumerate(np.array_split(data, chunks)):
        group.attrs[f"{name}{k}"] = part


def weights_root(f, path):
    """The group holding ``layer_names``: ``model_weights/`` or the file root."""
    root = f["model_weights"] if "model_weights" in f else f
    if not read_list_attr(root, "layer_names"):
        raise DataError(f"{path}: no 'layer_names' attribute at the root or under "
                        f"model_weights/; not a Keras or trainer weights file")
    return root


def stored_layers(root):
    """Layer name → list of (weight name, array), in the file's layer order."""
    out = {}
    for name in read_list_attr(root, "layer_names"):
        if name not in root:
            out[name] = []
            continue
        g = root[name]
        out[name] = [(w, read_dataset(g[w])) for w in read_list_attr(g, "weight_names")]
    return out


def nested_layers(stored, wanted):
    """Weights of layers that sat inside a nested model, which Keras saves as one group
    (``base/`` with ``conv2d/kernel:0``, Keras 3 ``base/conv2d/kernel``): each goes to the
    innermost wanted layer named in its path, in file order (Keras order per layer)."""
    out = {}
    for group, weights in stored.items():
        if group in wanted:
            continue
        for name, value in weights:
            parts = name.split("/")[:-1]
            owner = next((p for p in reversed(parts) if p in wanted and p not in stored), None)
            if owner is not None:
                out.setdefault(owner, []).append((name, value))
    return out


def warn(message):
    from trainer import events

    print(f"warning: {message}", file=sys.stderr)
    events.emit("warning", message=message)


def _mismatch(layer, stored, path):
    """Why ``stored`` (list of (name, array)) can't go into ``layer``, or None."""
    want = layer.get_weights()
    if len(stored) != len(want):
        return (f"{path}: layer '{layer.name}' has {len(want)} weights "
                f"({', '.join(layer.weight_names()) or 'none'}), the file has {len(stored)} "
                f"({', '.join(n for n, _ in stored) or 'none'})")
    for ours, w, (n, v) in zip(layer.weight_names(), want, stored):
        if w.shape != v.shape:
            return (f"{path}: layer '{layer.name}' weight '{ours}' (file: '{n}'): the model "
                    f"needs shape {w.shape}, the file has {v.shape}")
    return None


def read_weights(f, model, path, by_name=True, skip_mismatch=False, strict=True,
                 keras=None):
    """Load a Keras-layout HDF5 file (open as ``f``) into ``model``: the legacy layout
    of this module, or Keras 3's native one (native.py; ``keras``: the Keras config of
    the ``.keras`` archive it came from, if any).

    by_name: match layers by name (else: the layers that have weights, in order, as
        Keras's default ``load_weights``; in the native layout, the model's structure,
        as Keras 3 loads it). skip_mismatch: with by_name, skip a layer whose weight
        count or shapes differ (warning) instead of failing.
    strict: every layer of the model that has weights must be in the file (resuming a
        checkpoint); otherwise such layers keep their initial weights, with a warning.
    """
    from trainer.keras_io import native
    from trainer.keras_io.gates import from_keras3_gates

    if skip_mismatch and not by_name:
        raise ConfigError("model.weights: skip_mismatch needs by_name: true (as in Keras)")
    with_weights = [layer for layer in model.layers if layer.weight_names()]
    native_layout = native.is_native(f)
    if native_layout:
        stored = native.stored_layers(f, model, keras, path, by_name)
        by_name = True  # the structure walk has named every layer already
    else:
        stored = stored_layers(weights_root(f, path))
        stored.update(nested_layers(stored, {layer.name for layer in with_weights}))
    if not by_name:
        pairs = _in_order(with_weights, stored, path)
    else:
        pairs = [(layer, stored[layer.name]) for layer in with_weights if layer.name in stored]
        missing = [layer.name for layer in with_weights if layer.name not in stored]
        have = [n for n, ws in stored.items() if ws]
        if missing and (strict or not pairs):
            raise ConfigError(f"{path}: no weights for layer(s) {', '.join(missing)} "
                              f"(the file has weights for: {', '.join(have) or 'none'})")
        if missing:
            warn(f"{path}: no weights for layer(s) {', '.join(missing)}; they keep their "
                 f"initial weights")
    for layer, values in pairs:
        problem = _mismatch(layer, values, path)
        if problem and skip_mismatch:
            warn(f"{problem}; skipped (skip_mismatch)")
            continue
        if problem:
            raise ConfigError(problem)
        arrays = [v for _, v in values]
        if native_layout:  # Keras 3's hard_sigmoid under recurrent gates
            arrays = from_keras3_gates(layer, arrays)
        layer.set_weights([v.astype(layer.dtype) for v in arrays])


def _in_order(with_weights, stored, path):
    """Keras's topological loading: the n-th layer with weights gets the n-th."""
    file_layers = [(n, ws) for n, ws in stored.items() if ws]
    if len(file_layers) != len(with_weights):
        raise ConfigError(
            f"{path}: the file holds weights for {len(file_layers)} layers "
            f"({', '.join(n for n, _ in file_layers)}), the model has {len(with_weights)} "
            f"layers with weights ({', '.join(la.name for la in with_weights)}); "
            f"use by_name: true to match them by name")
    return [(layer, ws) for layer, (_, ws) in zip(with_weights, file_layers)]


def write_weights(group, model, weight_prefix=""):
    """Write every layer's weights into ``group`` in Keras 2's layout."""
    write_list_attr(group, "layer_names", [layer.name for layer in model.layers])
    group.attrs["backend"] = "tensorflow"
    group.attrs["keras_version"] = KERAS_VERSION
    for layer in model.layers:
        g = group.create_group(layer.name)
        names = [f"{weight_prefix}{layer.name}/{n}:0" for n in layer.weight_names()]
        write_list_attr(g, "weight_names", names)
        for full, value in zip(names, layer.get_weights()):
            g.create_dataset(full, data=value)
