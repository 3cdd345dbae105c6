"""A built model → Keras files: the architecture as ``to_json()`` writes it, and an
``.h5`` saved model that Keras 2's ``load_model`` reads (Keras 3's too; its ``.keras``
archives: keras3.py):

    attrs: model_config (JSON {"class_name": "Sequential" | "Functional", "config": ...}),
           keras_version, backend
    model_weights/  the weight layout of h5.py

Each layer's config is its resolved config (``config_of``; our arguments are Keras 2's)
with components written the Keras way: ``{"class_name": "GlorotUniform", "config": {}}``
for initializers and regularizers, a name for activations.
"""

import json

from trainer.config import families
from trainer.errors import ConfigError
from trainer.fileio import atomic_path
from trainer.keras_io.h5 import KERAS_VERSION, write_weights
from trainer.keras_io.arguments import component_kinds
from trainer.config.registry import config_of, parameters, split_spec


def keras_name(kind, name):
    """The Keras class name of one of our components (``GlorotUniform``, ``L2``)."""
    registry = families.ALL[kind]
    canonical = registry.canonical(name)
    for alias in [canonical, *registry.aliases_of(canonical)]:
        if alias[:1].isupper():
            return alias
    return canonical


def _keras_component(value, kind, where):
    if value is None:
        return None
    key = families.ALL[kind].user_key
    if key is not None and isinstance(value, dict) and key in value:
        # the user's own initializer or regularizer (not needed for inference): written
        # as Keras writes a custom object, loaded there with custom_objects={Name: ...}
        return {"class_name": value[key].split(":")[1], "config": dict(value.get("args") or {})}
    name, args = split_spec(value)
    if kind == "activation":
        defaults = {k: p.default for k, p in _params(kind, name).items()}
        if any(args.get(k) != defaults.get(k) for k in args or {}):
            raise ConfigError(f"{where}: activation {name} with arguments {args} has no "
                              f"Keras 2 string form; use an activation layer instead")
        return name
    if kind == "layer":
        return layer_record(value, where)
    return {"class_name": keras_name(kind, name), "config": dict(args or {})}


def _params(kind, name):
    return parameters(families.ALL[kind].lookup(name))


def layer_record(spec_or_layer, where, dtype="float32"):
    """``{"class_name", "config"}`` of a layer (instance or resolved spec)."""
    spec = config_of(spec_or_layer) if not isinstance(spec_or_layer, (dict, str)) \
        else spec_or_layer
    name, args = split_spec(spec)
    cls = families.layers.lookup(name)
    kinds = component_kinds(cls)
    config = {}
    for k, v in (args or {}).items():
        if k in kinds:
            v = _keras_component(v, kinds[k], f"{where} argument {k}")
        elif isinstance(v, tuple):
            v = list(v)
        config[k] = v
    for legacy in getattr(cls, "keras_legacy_arguments", ()):
        config.pop(legacy, None)  # read from old files; written as what replaced it
    if "trainable" in parameters(cls):  # a layer without weights: Keras's default
        config.setdefault("trainable", True)  # (Keras 3's SpatialDropout refuses it)
    config["dtype"] = dtype
    # "module" as tf.keras 2.13+ writes it: Keras 3 needs it to find a layer nested in
    # another's config (Bidirectional's, TimeDistributed's)
    return {"module": "keras.layers", "class_name": cls.registered_name, "config": config,
            "registered_name": None}


def keras_config(model, dtype="float32"):
    """Keras 2 ``{"class_name", "config"}`` of a built model."""
    graph = model.graph
    if not _is_sequential(graph):
        return _functional(model, dtype)
    first = graph.nodes[0].layer.name
    records = [{"class_name": "InputLayer",
                "config": input_config(f"{first}_input", graph.shapes[0], dtype)}]
    records += [layer_record(n.layer, f"layer '{n.layer.name}'", dtype) for n in graph.nodes]
    return {"class_name": "Sequential", "config": {"name": model.name, "layers": records}}


def input_config(name, shape, dtype, keras3=False):
    """An InputLayer's config: Keras 2's ``batch_input_shape`` or Keras 3's
    ``batch_shape``."""
    return {"batch_shape" if keras3 else "batch_input_shape": [None, *shape],
            "dtype": dtype, "sparse": False, "ragged": False, "name": name}


def _is_sequential(graph):
    return not getattr(graph, "functional", False) and graph.n_inputs == 1 and \
        _is_chain(graph)


def _is_chain(graph):
    return all(node.inputs == [k + graph.n_inputs - 1] and len(node.outputs) == 1
               and not getattr(node.layer, "keras_keyword_inputs", ())
               for k, node in enumerate(graph.nodes)) \
        and graph.outputs == [len(graph.shapes) - 1] \
        and len({id(n.layer) for n in graph.nodes}) == len(graph.nodes)


def _functional(model, dtype, call=None):
    """Keras 2's functional config, or with ``call`` (keras3.keras3_call, which writes
    one call) Keras 3's: ``batch_shape``, a single input or output written bare."""
    keras3 = call is not None
    graph = model.graph
    records, by_layer = [], {}
    history = []  # tensor index → [layer name, node index, 0]
    for name, shape in zip(graph.input_names, graph.shapes):
        records.append({"module": "keras.layers", "class_name": "InputLayer",
                        "config": input_config(name, shape, dtype, keras3),
                        "registered_name": None, "name": name, "inbound_nodes": []})
        history.append([name, 0, 0])
    for node in graph.nodes:
        layer = node.layer
        if id(layer) not in by_layer:
            rec = layer_record(layer, f"layer '{layer.name}'", dtype)
            rec["name"] = layer.name
            rec["inbound_nodes"] = []
            by_layer[id(layer)] = rec
            records.append(rec)
        rec = by_layer[id(layer)]
        kwargs = _call_kwargs(layer, rec)
        rec["inbound_nodes"].append(
            call(node, kwargs, history, graph.shapes, dtype) if keras3
            else _inbound_node(layer, node.inputs, history, kwargs))
        history += [[layer.name, len(rec["inbound_nodes"]) - 1, k]
                    for k in range(len(node.outputs))]
    ins = [[n, 0, 0] for n in graph.input_names]
    outs = [history[i] for i in graph.outputs]
    if keras3:  # one tensor is written bare, as Keras 3 does
        ins, outs = (ins[0] if len(ins) == 1 else ins), (outs[0] if len(outs) == 1 else outs)
    return {"class_name": "Functional", "config": {
        "name": model.name, "trainable": True, "layers": records,
        "input_layers": ins, "output_layers": outs}}


def _call_kwargs(layer, rec):
    """Call arguments Keras passes at call time (``use_causal_mask``): they move from
    the layer's config to the call's kwargs."""
    kwargs = {}
    for arg in getattr(layer, "keras_call_arguments", ()):
        rec["config"].pop(arg, None)
        value = getattr(layer, arg, None)
        if value:
            kwargs[arg] = value
    return kwargs


def _inbound_node(layer, inputs, history, kwargs):
    """One call as tf.keras records it: ``[[layer, node, tensor, kwargs], ...]``;
    MultiHeadAttention's value/key are keywords of the query's entry (a self-attention
    call gives the query as its value too)."""
    keywords = getattr(layer, "keras_keyword_inputs", ())
    if not keywords:
        return [[*history[i], dict(kwargs)] for i in inputs]
    rest = list(inputs[1:]) or [inputs[0]]
    for key, i in zip(keywords, rest):
        kwargs[key] = list(history[i])
    return [[*history[inputs[0]], kwargs]]


def model_json(model, dtype="float32"):
    return json.dumps({**keras_config(model, dtype), "keras_version": KERAS_VERSION,
                       "backend": "tensorflow"})


def write_h5(model, path, dtype="float32"):
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["model_config"] = json.dumps(keras_config(model, dtype)).encode("utf8")
            f.attrs["keras_version"] = KERAS_VERSION.encode("utf8")
            f.attrs["backend"] = b"tensorflow"
            write_weights(f.create_group("model_weights"), model)

def hard_sigmoid_layers(config):
    """Names of the layers in a Keras model config (wrapped layers too) that compute
    Keras 2's hard_sigmoid, as activation or recurrent_activation."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            cfg = node.get("config")
            if isinstance(cfg, dict) and "hard_sigmoid" in (
                    cfg.get("activation"), cfg.get("recurrent_activation")):
                found.append(str(cfg.get("name", node.get("class_name"))))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return list(dict.fromkeys(found))


def keras2_only_note(out, model, dtype):
    """The note `export` gives for a Keras 2-format file (.h5, .json) whose layers use
    hard_sigmoid: Keras 2 (tf.keras 2.x) reads it as trained; Keras 3 redefined
    hard_sigmoid (relu6(x + 3) / 6, not clip(0.2 x + 0.5, 0, 1)) and predicts otherwise
    from the same file. None when no layer uses it."""
    names = hard_sigmoid_layers(keras_config(model, dtype))
    if not names:
        return None
    return (f"{out.name}: Keras 2 (tf.keras 2.x) reads this file as trained; Keras 3 "
            f"computes hard_sigmoid as relu6(x + 3) / 6, not Keras 2's clip(0.2 x + 0.5, "
            f"0, 1), so it predicts differently with layers {', '.join(names)}. For Keras 3, "
            f"export to .keras (exact: `trainer export RUN model.keras`)")
