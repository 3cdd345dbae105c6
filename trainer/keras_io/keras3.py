"""What Keras 3 needs: ``.keras`` archives written from a built model, and the
conversions where Keras 3 computes something else under a Keras 2 name.

- ``keras3_model``: the model config in Keras 3's form (``config.json``): ``batch_shape``,
  each call as ``{"args", "kwargs"}`` of ``__keras_tensor__`` (shape, dtype, history),
  MultiHeadAttention's ``key=`` and a recurrent layer's ``initial_state=`` as keywords.
- ``weight_tree``/``write_archive``: the native weights tree of native.py, and the zip.
- ThresholdedReLU (gone in Keras 3) is written as ``ReLU(threshold=theta)``.
- Keras 3's ``hard_sigmoid`` is relu6(x + 3) / 6, Keras 2's (ours) clip(0.2 x + 0.5, 0,
  1) = relu6(1.2 x + 3) / 6: an LSTM's or GRU's gates go out with their weights scaled
  by 1.2 and come back divided (``from_keras3_gates``); other uses are refused.
"""

import datetime
import io
import json
import zipfile

from trainer.errors import ConfigError
from trainer.keras_io.export import (_functional, _is_sequential, input_config,
                                     keras_config)
from trainer.keras_io.gates import to_keras3_gates
from trainer.keras_io.native import CONFIG_MEMBER, WEIGHTS_MEMBER, group_keys


def keras3_model(model, dtype="float32"):
    """(Keras 3 model config — ``config.json`` of a ``.keras`` archive —, the layers in
    the order Keras 3 keeps their weights: [(class name, name, layer or None)]).

    Where Keras 3 differs from the Keras 2 config: ``ThresholdedReLU`` (gone) becomes
    ``ReLU(threshold=theta)``; Keras 3's ``hard_sigmoid`` is relu6(x + 3) / 6, not
    clip(0.2 x + 0.5, 0, 1), so recurrent gates keep their numbers by weights scaled
    by 1.2 (weight_tree) and any other use of it is refused."""
    graph = model.graph
    layers = {layer.name: layer for layer in model.layers}
    if _is_sequential(graph):
        legacy = [_keras3_record(r) for r in keras_config(model, dtype)["config"]["layers"]]
        shape = legacy[0]["config"]["batch_input_shape"]
        first = {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
                 "config": input_config(legacy[0]["config"]["name"], shape[1:], dtype, True)}
        config = {"name": model.name, "trainable": True, "dtype": dtype,
                  "layers": [first, *legacy[1:]], "build_input_shape": shape}
        order = [(r["class_name"], r["config"]["name"], layers[r["config"]["name"]])
                 for r in legacy[1:]]
        return {"module": "keras", "class_name": "Sequential", "config": config,
                "registered_name": None, "build_config": {"input_shape": shape}}, order
    config = _functional(model, dtype, call=keras3_call)["config"]
    config["layers"] = [_keras3_record(r) for r in config["layers"]]
    order = [(r["class_name"], r["name"], layers.get(r["name"])) for r in config["layers"]]
    return {"module": "keras.src.models.functional", "class_name": "Functional",
            "config": config, "registered_name": "Functional",
            "build_config": {"input_shape": None}}, order


def _keras3_record(rec):
    """A layer record in what Keras 3 takes (see ``keras3_model``)."""
    _check_keras3(rec, rec.get("name") or rec["config"].get("name"))
    if rec["class_name"] != "ThresholdedReLU":
        return rec
    config = {k: v for k, v in rec["config"].items() if k != "theta"}
    config["threshold"] = rec["config"].get("theta", 1.0)
    return {**rec, "class_name": "ReLU", "config": config}


def _check_keras3(record, name):
    """Refuse Keras 2's hard_sigmoid where Keras 3 would compute another function."""
    config = record.get("config") or {}
    if config.get("activation") == "hard_sigmoid":
        raise ConfigError(
            f"export: layer '{name}' uses hard_sigmoid, which Keras 3 computes as "
            f"relu6(x + 3) / 6 and trainer (as Keras 2) as clip(0.2 x + 0.5, 0, 1): a "
            f".keras file would predict differently. Export as keras-h5 (tf.keras 2), or "
            f"train with another activation (recurrent gates are converted exactly)")
    for key in ("layer", "backward_layer"):
        if isinstance(config.get(key), dict):
            _check_keras3(config[key], name)


def write_keras(model, path, dtype="float32"):
    """A Keras 3 ``.keras`` archive of a built model, written atomically."""
    config, order = keras3_model(model, dtype)
    write_archive(path, config, order)


def keras3_call(node, kwargs, history, shapes, dtype):
    """One call as Keras 3 records it: ``{"args": [...], "kwargs": {...}}`` with each
    tensor a ``__keras_tensor__`` (shape, dtype, history). MultiHeadAttention takes
    (query, value) and ``key=``; a recurrent layer its states as ``initial_state=``;
    a layer on several inputs (merges, Attention) one list."""
    from trainer.layers.recurrent import RNN

    def tensor(i):
        return {"class_name": "__keras_tensor__", "config": {
            "shape": [None, *shapes[i]], "dtype": dtype, "keras_history": list(history[i])}}

    layer, tensors = node.layer, [tensor(i) for i in node.inputs]
    if getattr(layer, "keras_keyword_inputs", ()):
        args = [tensors[0], tensors[1] if len(tensors) > 1 else tensors[0]]
        if len(tensors) > 2:
            kwargs["key"] = tensors[2]
    elif isinstance(layer, RNN) and len(tensors) > 1:
        args, kwargs["initial_state"] = [tensors[0]], tensors[1:]
    else:
        args = [tensors] if node.listed else tensors[:1]
    return {"args": args, "kwargs": kwargs}


#: the Keras release the written archives were checked against (metadata.json)
KERAS3_VERSION = "3.15.1"


def weight_tree(layer):
    """One of our layers → its Keras 3 object tree: (own arrays, {sub-layer: tree}).
    Keras keeps a recurrent layer's weights in its ``cell``, Bidirectional's in
    ``forward_layer``/``backward_layer``, TimeDistributed's in ``layer`` and
    MultiHeadAttention's in four EinsumDense sub-layers."""
    from trainer.layers.attention import MultiHeadAttention
    from trainer.layers.recurrent import RNN
    from trainer.layers.wrappers import Bidirectional, TimeDistributed

    if isinstance(layer, RNN):
        return [], {"cell": (to_keras3_gates(layer), {})}
    if isinstance(layer, Bidirectional):
        return [], {"forward_layer": weight_tree(layer.forward_layer),
                    "backward_layer": weight_tree(layer.backward_)}
    if isinstance(layer, TimeDistributed):
        return [], {"layer": weight_tree(layer.layer)}
    if isinstance(layer, MultiHeadAttention):
        subs = {}
        for prefix, sub in (("query", "query_dense"), ("key", "key_dense"),
                            ("value", "value_dense"), ("attention_output", "output_dense")):
            subs[sub] = ([layer.params[n] for n in layer.weight_names()
                          if n.startswith(prefix + "/")], {})
        return [], subs
    return layer.get_weights(), {}


def _write_tree(group, tree, name=None):
    own, subs = tree
    v = group.create_group("vars")
    if name is not None:
        v.attrs["name"] = name
    for i, value in enumerate(own):
        v.create_dataset(str(i), data=value)
    for sub, subtree in subs.items():
        _write_tree(group.create_group(sub), subtree)


def write_weights_tree(f, layers):
    """``layers``: [(Keras class name, layer name, our layer or None)] in Keras's order
    (None: an input layer, which has no weights but a group all the same)."""
    container = f.create_group("layers")
    for key, (cls, name, layer) in zip(group_keys(cls for cls, _, _ in layers), layers):
        _write_tree(container.create_group(key),
                    weight_tree(layer) if layer is not None else ([], {}), name)
    f.create_group("vars")


def write_archive(path, config, layers):
    """A ``.keras`` archive: ``config`` (the Keras 3 model config) and the weights of
    ``layers`` (as ``write_weights_tree``), written atomically."""
    import h5py

    from trainer.fileio import atomic_path

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        write_weights_tree(f, layers)
    metadata = {"keras_version": KERAS3_VERSION,
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w") as z:
            z.writestr("metadata.json", json.dumps(metadata))
            z.writestr(CONFIG_MEMBER, json.dumps(config))
            z.writestr(WEIGHTS_MEMBER, buffer.getvalue())
