"""Keras 3's native files: ``.keras`` archives and ``.weights.h5`` weight files.

A ``.keras`` file (``model.save("m.keras")``) is a zip archive of ``config.json`` (the
model, as ``to_json()`` gives it), ``metadata.json`` and ``model.weights.h5``. That
weights file, and what ``model.save_weights("m.weights.h5")`` writes, follow the
model's objects rather than its layer names::

    layers/<snake_case class>[_k]/vars/<i>     a layer's own variables, trainable first,
                                               in creation order (dense/vars/0 the kernel)
    layers/lstm/cell/vars/<i>                  sub-layers under their attribute names:
    layers/bidirectional/forward_layer/...     cell, forward_layer, backward_layer, layer,
    layers/multi_head_attention/query_dense/.. query/key/value/output_dense
    layers/functional/layers/...               a nested model's own layers
    optimizer/..., vars/                       the optimizer, the model's own (empty)

``<snake_case class>[_k]`` is the layer's class name in snake case, numbered per class
in the order of the model's layers (``dense``, ``dense_1``; a Sequential's input layer
is not one of its layers, a functional model's are). Keras 3.x writes the layer's name
as an attribute ``name`` of each ``vars`` group; older files don't.

Reading gives what ``h5.stored_layers`` gives for the legacy layout — layer name →
``[(label, array)]`` in Keras's ``layer.weights`` order — so matching, shape checks and
messages are the legacy reader's. Layers are named by the ``name`` attributes when every
layer group has one; otherwise, or with ``by_name: false``, by walking the model's
layers as Keras does (the Keras config in a ``.keras`` archive, or our model's layers).
"""

import contextlib
import json
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

from trainer.errors import ConfigError, DataError
from trainer.keras_io.h5limits import open_file, read_dataset
from trainer.fileio import regular_file

WEIGHTS_MEMBER = "model.weights.h5"
CONFIG_MEMBER = "config.json"
#: Sub-layer groups in Keras's ``layer.weights`` order (each composite layer uses its own)
SUB_LAYERS = ("forward_layer", "backward_layer", "cell", "layer",
              "query_dense", "key_dense", "value_dense", "output_dense")
MODEL_CLASSES = ("Sequential", "Functional", "Model")
#: config.json is a few kB per layer; anything near this is not a Keras config
CONFIG_LIMIT = 64 * 2**20


def snake_case(name):
    """Keras 3's class name → file group name: ``PReLU`` → ``p_re_lu``. (Keras 3's
    rule; engine.layer.snake_case is Keras 2's for layer names, which also keeps
    digits with a capitalised word.)"""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def is_native(f):
    """Whether an open HDF5 file has Keras 3's native layout (and not the legacy one)."""
    return "layers" in f and "layer_names" not in f.attrs and "model_weights" not in f


def read_archive_config(path, error=ConfigError):
    """The Keras model config (dict) in a ``.keras`` archive, and whether it holds weights.
    A damaged archive raises ``error`` (the caller says which setting read it)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if CONFIG_MEMBER not in names:
                raise error(f"{path} is a zip archive without {CONFIG_MEMBER}; not a Keras "
                            f"3 .keras file")
            size = z.getinfo(CONFIG_MEMBER).file_size
            if size > CONFIG_LIMIT:
                raise error(f"{path}: {CONFIG_MEMBER} is {size} bytes; not a Keras model "
                            f"config")
            text = z.read(CONFIG_MEMBER).decode("utf-8")
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read the .keras archive {path}: {exc}") from None
    try:
        return json.loads(text), WEIGHTS_MEMBER in names
    except json.JSONDecodeError as exc:
        raise error(f"{path}: {CONFIG_MEMBER} is not JSON ({exc})") from None


@contextlib.contextmanager
def open_weights(path):
    """An open h5py file of a weights path: an HDF5 file, or the weights inside a
    ``.keras`` archive (extracted to a temporary file for as long as it is open). Yields
    (file, the archive's Keras config or None)."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise DataError(f"file not found: {path}")
    regular_file(path, "weights file")
    if not zipfile.is_zipfile(path):
        try:
            f = open_file(path)
        except OSError as exc:
            raise DataError(f"{path} is not a readable HDF5 file or .keras archive "
                            f"({exc})") from None
        with f:
            yield f, None
        return
    keras, has_weights = read_archive_config(path, error=DataError)
    if not has_weights:
        raise DataError(f"{path} is a .keras archive without {WEIGHTS_MEMBER}"
                        + (" (sharded weights, model.weights.json, are not read; save "
                           "without max_shard_size)" if _sharded(path) else ""))
    with tempfile.TemporaryDirectory(prefix="trainer_keras_") as tmp:
        try:
            with zipfile.ZipFile(path) as z:
                size, free = z.getinfo(WEIGHTS_MEMBER).file_size, shutil.disk_usage(tmp).free
                if size > free:  # (a zip bomb says so too)
                    raise DataError(f"{path}: extracting {WEIGHTS_MEMBER} needs {size} bytes, "
                                    f"{free} are free in {tempfile.gettempdir()} (TMPDIR)")
                extracted = z.extract(WEIGHTS_MEMBER, tmp)
            f = open_file(extracted)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"{path}: cannot read {WEIGHTS_MEMBER} in the archive "
                            f"({exc})") from None
        with f:
            yield f, keras


def _sharded(path):
    with zipfile.ZipFile(path) as z:
        return any(n.endswith(".weights.json") for n in z.namelist())


# -- the weights tree -------------------------------------------------------------------

def _vars(group, label):
    """A ``vars`` group's arrays, in index order."""
    if "vars" not in group:
        return []
    v = group["vars"]
    keys = sorted(v, key=lambda k: int(k) if k.isdigit() else -1)
    if any(not k.isdigit() for k in keys):
        raise DataError(f"{label}: unexpected entries {sorted(k for k in keys if not k.isdigit())}"
                        f" in {v.name}; not a Keras 3 weights file")
    return [(f"{v.name}/{k}", read_dataset(v[k])) for k in keys]


def layer_weights(group, label):
    """One layer group → [(label, array)] in Keras's ``layer.weights`` order: its own
    variables, then its sub-layers' (``SUB_LAYERS`` order). A sub-group holding weights
    that is not a known sub-layer is an error: its place in the order is unknown."""
    out = _vars(group, label)
    for sub in SUB_LAYERS:
        if sub in group:
            out += layer_weights(group[sub], label)
    for name in group:
        if name in SUB_LAYERS or name == "vars":
            continue
        if _holds_arrays(group[name]):
            raise DataError(f"{label}: {group[name].name} holds weights of a sub-layer "
                            f"trainer doesn't know how to order; not a layer it can load")
    return out


def _holds_arrays(group):
    import h5py

    found = []
    group.visititems(lambda _, obj: found.append(1) if isinstance(obj, h5py.Dataset) else None)
    return bool(found)


def _layer_groups(container):
    """Every layer group under a ``layers`` group, nested models' layers included:
    [(group, its vars name attribute or None)]."""
    out = []
    for key in container:
        g = container[key]
        if "layers" in g:  # a nested model
            out += _layer_groups(g["layers"])
            continue
        name = g["vars"].attrs.get("name") if "vars" in g else None
        name = name.decode("utf8", "replace") if isinstance(name, bytes) else name
        out.append((g, name if isinstance(name, str) else None))
    return out


def by_attribute_names(f, label):
    """Layer name → weights, from the ``name`` attributes; None when a layer group lacks
    one (files from Keras versions that didn't write them)."""
    groups = _layer_groups(f["layers"])
    if not groups or any(name is None for _, name in groups):
        return None
    return {name: layer_weights(g, label) for g, name in groups}


def by_structure(f, structure, label):
    """Layer name → weights, walking ``structure`` as Keras does: [(class name, layer
    name, nested structure or None)] in the model's layer order."""
    out = {}
    _walk(f["layers"], structure, out, label)
    return out


def group_keys(classes):
    """Keras's group name for each layer of a model, from their class names in layer
    order: snake case, numbered per class (``dense``, ``dense_1``, ...)."""
    used, keys = {}, []
    for cls in classes:
        key = snake_case(cls)
        used[key] = used.get(key, -1) + 1
        keys.append(key if used[key] == 0 else f"{key}_{used[key]}")
    return keys


def _walk(container, structure, out, label):
    keys = group_keys(cls for cls, _, _ in structure)
    for key, (cls, name, inner) in zip(keys, structure):
        if key not in container:
            out[name] = []
            continue
        g = container[key]
        if inner is not None:
            if "layers" not in g:
                raise DataError(f"{label}: {g.name} should hold the layers of the nested "
                                f"model '{name}' and doesn't; the file does not fit the model")
            _walk(g["layers"], inner, out, label)
        else:
            out[name] = layer_weights(g, label)


def keras_structure(keras):
    """[(class name, layer name, nested or None)] of a Keras model config, in the order
    of its ``layers`` (the order Keras saves them in)."""
    config = keras.get("config") or {}
    records = config if isinstance(config, list) else config.get("layers", [])
    out = []
    for rec in records:
        cls = rec.get("class_name")
        name = (rec.get("config") or {}).get("name") or rec.get("name")
        if keras.get("class_name") == "Sequential" and cls == "InputLayer":
            continue  # not one of a Sequential's layers
        if str(rec.get("module", "")).startswith("keras.src.ops"):
            continue  # an operation (a + b, a mask's NotEqual): not a layer, no group
        out.append((cls, name, keras_structure(rec) if cls in MODEL_CLASSES else None))
    return out


def model_structure(model):
    """The same for one of our built models (flat: nested Keras models were spliced).
    Our layers' registered names are Keras's class names."""
    return [(getattr(type(layer), "registered_name", type(layer).__name__), layer.name, None)
            for layer in model.layers]


def stored_layers(f, model, keras, label, by_name=True):
    """Layer name → [(label, array)] of a native weights file, in model order."""
    if by_name:
        named = by_attribute_names(f, label)
        if named is not None:
            return named
    structure = keras_structure(keras) if keras is not None else model_structure(model)
    if keras is None and any("layers" in f["layers"][k] for k in f["layers"]):
        raise DataError(f"{label}: the file holds a nested Keras model and its layer groups "
                        f"carry no names; load the .keras file (model.keras) instead")
    return by_structure(f, structure, label)
