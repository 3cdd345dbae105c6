"""A Keras model config (``to_json()``, or ``model_config`` of an ``.h5``) → our
``model:`` config section, which the normal builder then builds.

Read: Sequential (``batch_input_shape`` / ``batch_shape`` / ``build_input_shape``) and
functional models (Keras 2 ``inbound_nodes`` ``[[["dense", 0, 0, {}]]]`` and Keras 3
``[{"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": [...]}}],
"kwargs": {}}]``). A shared layer's further calls become ``{call: name}`` entries,
referred to as ``name[k]``, as in the functional builder; output ``j`` of a layer with
several outputs (Keras's tensor index, e.g. an LSTM's states with ``return_state``) is
``name:j`` (``name[k]:j`` for call k). A recurrent layer's ``initial_state`` tensors
(Keras 2 lists them as inputs after the first; Keras 3 as the ``initial_state``
keyword) become its extra inputs. A nested model called once is
flattened into the outer one: a Sequential inside a Sequential is spliced in, anything
else becomes a functional config. Each layer goes through ``arguments.layer_spec``.
"""

from trainer.config import families
from trainer.keras_io.arguments import MODELS, Problems, layer_spec
from trainer.config.registry import parameters


def translate_model(keras, source="keras model", lenient_init=False, native=False):
    """Keras ``{"class_name", "config"}`` of a model → (our model section, problems).
    ``keras_version`` in the dict (to_json writes it; read_model_file adds the file's)
    tells Keras 3 files apart; ``native``: the weights come in Keras 3's native layout
    (a ``.keras`` archive), where recurrent gates under Keras 3's hard_sigmoid convert.

    lenient_init: an initializer we don't know falls back to the layer's default
    instead of being a problem (the weights come from a file anyway).
    """
    problems = Problems()
    # Keras 3 changed what some names compute (arguments._component)
    keras3 = str(keras.get("keras_version", "")).startswith("3")
    ctx = {"problems": problems, "lenient_init": lenient_init, "keras3": keras3,
           "native": native}
    cls = keras.get("class_name")
    config = keras.get("config")
    if cls == "Sequential":
        model = _sequential(config, ctx)
    elif cls in ("Functional", "Model"):
        model = _functional(config, ctx)
    else:
        problems.add(f"the top level is a '{cls}'; expected a Sequential or functional "
                     f"model (class_name Sequential, Functional or Model)")
        model = {}
    return model, problems


# -- models ---------------------------------------------------------------------------

def _is_model(rec):
    return isinstance(rec, dict) and rec.get("class_name") in MODELS


def _records(config):
    return config if isinstance(config, list) else config.get("layers", [])  # Keras 2.2: a list


def _frozen(rec, frozen):
    return frozen or (rec.get("config") or {}).get("trainable") is False


def _flat(records, frozen=False):
    """(record, frozen) of a Sequential's layers, nested Sequentials spliced in; None when
    a nested functional model needs the functional form."""
    out = []
    for rec in records:
        if rec.get("class_name") == "Sequential":
            inner = _flat(_records(rec["config"]), _frozen(rec, frozen))
            if inner is None:
                return None
            out += inner
        elif _is_model(rec):
            return None
        elif rec.get("class_name") != "InputLayer":
            out.append((rec, frozen))
    return out


def _sequential_shape(config):
    records = _records(config)
    for rec in records[:2]:
        kc = rec.get("config", {})
        if rec.get("class_name") == "InputLayer":
            return _batch_shape(kc)
        if _is_model(rec):
            inner = rec["config"]
            return (_sequential_shape(inner) if rec["class_name"] == "Sequential"
                    else _batch_shape(inner["layers"][0].get("config", {})))
        shape = _batch_shape(kc) or _placement_shape(kc) or _build_shape(rec)
        if shape:
            return shape
        break
    return None if isinstance(config, list) else _build_shape(config)


def _sequential(config, ctx):
    name = None if isinstance(config, list) else config.get("name")
    shape = _sequential_shape(config)
    if shape is None:
        ctx["problems"].add("the Sequential model has no input shape (no InputLayer, "
                            "batch_input_shape or build_input_shape)")
    flat = _flat(_records(config))
    if flat is None:  # a functional model inside: the whole becomes functional
        first = _records(config)[0]
        input_name = first["config"]["name"] if first.get("class_name") == "InputLayer" \
            else "input"
        entries, aliases = [], {}
        outputs = _chain(_records(config), [input_name], ctx, entries, aliases, False)
        model = _resolved({"inputs": {input_name: {"shape": list(shape or [])}},
                           "layers": entries, "outputs": outputs}, aliases)
    else:
        specs = [layer_spec(rec, ctx, frozen=frozen) for rec, frozen in flat]
        model = {"input_shape": list(shape or []),
                 "layers": [spec for spec in specs if spec is not None]}
    if name:
        model["name"] = name
    return model


def _batch_shape(kc):
    shape = kc.get("batch_input_shape") or kc.get("batch_shape")
    return list(shape[1:]) if shape else None


def _placement_shape(kc):
    if kc.get("input_shape"):
        return list(kc["input_shape"])
    return None


def _build_shape(rec):
    if not isinstance(rec, dict):
        return None
    shape = rec.get("build_input_shape") or (rec.get("build_config") or {}).get("input_shape")
    return list(shape[1:]) if isinstance(shape, list) and shape else None


def _functional(config, ctx):
    inputs = {}
    for rec in config.get("layers", []):
        if rec.get("class_name") == "InputLayer":
            name = rec.get("name") or rec["config"]["name"]
            inputs[name] = {"shape": _batch_shape(rec.get("config", {})) or []}
    order = [_ref(t, ctx["problems"]) for t in _tensor_list(config.get("input_layers", []))]
    missing = [n for n in order if n not in inputs]
    if missing:
        ctx["problems"].add(f"input_layers name {missing}, which are not InputLayers of "
                            f"the model")
    entries, aliases = [], {}
    outputs = _graph(config, None, ctx, entries, aliases, False)
    model = _resolved({"inputs": {n: inputs[n] for n in order if n in inputs},
                       "layers": entries, "outputs": outputs}, aliases)
    if config.get("name"):
        model["name"] = config["name"]
    return model


def _graph(config, feed, ctx, entries, aliases, frozen):
    """Entries for a functional model's layers; returns its output references. A nested
    model (``feed``: the references its inputs are called on) is flattened into them."""
    problems = ctx["problems"]
    if feed is not None:
        names = [_ref(t, problems) for t in _tensor_list(config.get("input_layers", []))]
        aliases.update({n: f for n, f in zip(names, feed) if n != f})
    masks = _implicit_masks(config.get("layers", []))
    for rec in config.get("layers", []):
        if rec.get("class_name") == "InputLayer":
            continue
        name = rec.get("name") or rec.get("config", {}).get("name")
        if name in masks:
            continue  # our Embedding / Masking give this mask themselves
        if str(rec.get("module", "")).startswith("keras.src.ops"):
            rec = _operation(rec, name, problems)
            if rec is None:
                continue
        nodes = [_node_inputs(node, name, problems, masks)
                 for node in rec.get("inbound_nodes", [])]
        if not nodes:
            continue  # a layer the model never calls
        if _is_model(rec):
            if len(nodes) > 1:
                problems.add(f"nested model '{name}' is called {len(nodes)} times; only a "
                             f"nested model called once can be flattened")
                continue
            outs = _inline(rec, nodes[0], ctx, entries, aliases, frozen)
            if len(outs) == 1 and outs[0] != name:
                aliases[name] = outs[0]
            elif len(outs) != 1:
                problems.add(f"nested model '{name}' has {len(outs)} outputs; not supported")
            continue
        spec = layer_spec(rec, ctx, frozen=frozen)
        if spec is None:
            continue
        (cls, args), = spec.items()
        calls = [_call_arguments(node) for node in rec.get("inbound_nodes", [])]
        for key in {k for c in calls for k in c}:
            values = {bool(c.get(key)) for c in calls}
            if key not in parameters(families.layers.lookup(cls)) or len(values) > 1:
                problems.add(f"layer '{name}' is called with {key}="
                             f"{'/'.join(str(v) for v in sorted(values))}; not supported "
                             f"{'for this layer' if len(values) == 1 else 'differing per call'}")
            elif values == {True}:
                args[key] = True  # a call argument in Keras, an argument here
        for k, refs in enumerate(nodes):
            ref = refs[0] if len(refs) == 1 else refs
            if k == 0:
                entries.append({cls: {**args, "inputs": ref}})
            else:
                entries.append({"call": name, "inputs": ref})
    return [_ref(t, problems) for t in _tensor_list(config.get("output_layers", []))]


#: Keras 3 operations on symbolic tensors (``a + b``, ``keras.ops.relu(x)``), which a
#: functional model records as nodes, that are one of our layers
OPERATIONS = {"Add": "Add", "Subtract": "Subtract", "Multiply": "Multiply",
              "Maximum": "Maximum", "Minimum": "Minimum", "Concatenate": "Concatenate"}
OPERATION_ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh",
                         "Softplus": "softplus", "Softsign": "softsign", "Selu": "selu",
                         "Silu": "swish", "Exp": "exponential", "Softmax": "softmax"}


#: operations with arguments → (layer, its arguments); ops.gelu is approximate by
#: default, ops.leaky_relu's slope 0.2 (both as written in the record)
OPERATION_LAYERS = {
    "Gelu": lambda c: ("Activation", {"activation": {
        "gelu": {"approximate": bool(c.get("approximate", True))}}}),
    "Elu": lambda c: ("ELU", {"alpha": c.get("alpha", 1.0)}),
    "LeakyRelu": lambda c: ("LeakyReLU", {"alpha": c.get("negative_slope", 0.2)}),
}


def _operation(rec, name, problems):
    """A Keras 3 operation node → the record of the layer that computes the same, or
    None (a problem noted): an op on a constant (``x * 2``), or one without a layer."""
    cls, config = rec.get("class_name"), rec.get("config") or {}
    for node in rec.get("inbound_nodes", []):
        args = node.get("args", []) if isinstance(node, dict) else []
        flat = args[0] if cls == "Concatenate" and len(args) == 1 else args
        if any(not (isinstance(a, dict) and a.get("class_name") == "__keras_tensor__")
               for a in flat) or (isinstance(node, dict) and node.get("kwargs")):
            problems.add(f"operation '{name}' ({cls}) takes a constant or keyword "
                         f"argument; only operations between tensors translate to layers")
            return None
    if cls in OPERATIONS:
        extra = {"axis": config.get("axis", -1)} if cls == "Concatenate" else {}
        return {**rec, "class_name": OPERATIONS[cls], "config": {"name": name, **extra}}
    if cls in OPERATION_ACTIVATIONS and config.get("axis", -1) == -1:
        return {**rec, "class_name": "Activation",
                "config": {"name": name, "activation": OPERATION_ACTIVATIONS[cls]}}
    if cls in OPERATION_LAYERS:  # an op with an argument: the layer that takes it
        layer, args = OPERATION_LAYERS[cls](config)
        return {**rec, "class_name": layer, "config": {"name": name, **args}}
    problems.add(f"operation '{name}' ({rec.get('module')}.{cls}) has no trainer layer; "
                 f"operations that translate: "
                 f"{', '.join(sorted({*OPERATIONS, *OPERATION_LAYERS}))} and the "
                 f"activations {', '.join(sorted(OPERATION_ACTIVATIONS))}")
    return None


def _chain(records, feed, ctx, entries, aliases, frozen):
    """Entries for a Sequential's layers, each taking the one before; returns [output]."""
    ref = feed[0]
    for rec in records:
        if rec.get("class_name") == "InputLayer":
            continue
        if _is_model(rec):
            ref = _inline(rec, [ref], ctx, entries, aliases, frozen)[0]
            continue
        spec = layer_spec(rec, ctx, frozen=frozen)
        if spec is not None:
            (cls, args), = spec.items()
            entries.append({cls: {**args, "inputs": ref}})
            ref = args.get("name") or rec.get("name")
    return [ref]


def _inline(rec, feed, ctx, entries, aliases, frozen):
    """A nested model's layers, called on ``feed``, as entries of the outer model."""
    config, frozen = rec["config"], _frozen(rec, frozen)
    if rec["class_name"] == "Sequential":
        return _chain(_records(config), feed, ctx, entries, aliases, frozen)
    return _graph(config, feed, ctx, entries, aliases, frozen)


def _resolved(model, aliases):
    """References to a flattened model (or its inputs) replaced by what they stand for."""
    def resolve(ref):
        seen = set()
        while ref in aliases and ref not in seen:
            seen.add(ref)
            ref = aliases[ref]
        return ref

    def fix(refs):
        return [resolve(r) for r in refs] if isinstance(refs, list) else resolve(refs)

    for entry in model["layers"]:
        target = entry if "call" in entry else next(iter(entry.values()))
        target["inputs"] = fix(target["inputs"])
    model["outputs"] = fix(model["outputs"])
    return model


def _tensor_list(value):
    """``[["a", 0, 0], ...]`` or a single ``["a", 0, 0]`` (Keras 3, one tensor)."""
    if isinstance(value, dict):
        value = list(value.values())
    if value and isinstance(value[0], str):
        return [value]
    return value


def _ref(history, problems):
    """(layer, node index, tensor index) → the name our functional config uses:
    ``layer``, ``layer[node]``, and ``:tensor`` for a layer's further outputs."""
    layer, node, tensor = history[0], int(history[1]), int(history[2])
    ref = layer if node == 0 else f"{layer}[{node}]"
    return ref if tensor == 0 else f"{ref}:{tensor}"


def _implicit_masks(records):
    """Names of the ops Keras 3 records for the masks of ``Embedding(mask_zero=True)``
    (``NotEqual(ids, 0)``) and ``Masking`` (``Any(NotEqual(x, mask_value), axis=-1)``),
    and passes to later layers as ``mask=`` call arguments (through ``ConvertToTensor``,
    and ``LogicalOr``/``LogicalAnd`` where a merge layer joins masks). Our layers hand
    those masks on by themselves (as Keras 2 did), so such ops and the ``mask=``
    arguments that take them are dropped. A join of masks from different sources
    is not (Keras 3 ORs what Keras 2 ANDs); any other use of these ops stays a problem."""
    sources = {}  # input tensor of a masking layer → (its class, the value it compares)
    for rec in records:
        kc = rec.get("config") or {}
        mask_value = {"Embedding": 0 if kc.get("mask_zero") else None,
                      "Masking": kc.get("mask_value", 0.0)}.get(rec.get("class_name"))
        for node in rec.get("inbound_nodes", []) if mask_value is not None else ():
            found = []
            _keras_tensors(node.get("args", []) if isinstance(node, dict) else [], found)
            if found:
                sources[tuple(found[0])] = (rec["class_name"], mask_value)
    root = {}  # mask op → the op that made the mask from its source (one per source)
    partial, used = {}, set()  # NotEqual of a Masking layer's input: a mask after Any
    for rec in records:
        name = (rec.get("config") or {}).get("name") or rec.get("name")
        cls, config = rec.get("class_name"), rec.get("config") or {}
        nodes = rec.get("inbound_nodes") or [{}]
        args = nodes[0].get("args", []) if len(nodes) == 1 and isinstance(nodes[0], dict) else []
        found = []
        _keras_tensors(args, found)
        parents = {f[0] for f in found}
        if cls == "NotEqual" and len(args) == 2 and len(found) == 1:
            source = sources.get(tuple(found[0]))
            if source is not None and args[1] == source[1]:
                if source[0] == "Embedding":
                    root[name] = name
                else:
                    partial[name] = name
        elif cls == "Any" and len(found) == 1 and found[0][0] in partial and \
                config.get("axis") == -1 and not config.get("keepdims"):
            root[name] = name
            used.add(found[0][0])
        elif cls in ("ConvertToTensor", "LogicalOr", "LogicalAnd") and found and \
                parents <= set(root) and len({root[p] for p in parents}) == 1:
            root[name] = root[found[0][0]]
    return set(root) | used


def _node_inputs(node, layer, problems, masks=()):
    """The inputs of one call, both Keras forms → our reference names. ``masks``: names
    of Keras 3 mask ops (``_implicit_masks``) whose ``mask=`` arguments are dropped."""
    if isinstance(node, dict):  # Keras 3
        found = []
        _keras_tensors(node.get("args", []), found)
        kwargs = dict(node.get("kwargs", {}))
        mask = []
        _keras_tensors(kwargs.get("mask"), mask)
        if mask and all(h[0] in masks for h in mask):
            kwargs.pop("mask")
        _keras_tensors(kwargs.pop("initial_state", None), found)  # after the input
        for key in ATTENTION_INPUTS:  # MultiHeadAttention(query=, value=, key=)
            _keras_tensors(kwargs.pop(key, None), found)
        extra = []
        _keras_tensors(kwargs, extra)
        if extra:
            problems.add(f"layer '{layer}' is called with tensor keyword arguments "
                         f"(e.g. a mask); not supported")
        return [_ref(h, problems) for h in found]
    # Keras 2: [["dense", 0, 0, {}], ...]; attention's value/key come as keywords of the
    # query: [["q", 0, 0, {"value": ["v", 0, 0]}]]
    refs = []
    for item in node:
        refs.append(_ref(item, problems))
        extra = dict(item[3]) if len(item) > 3 and isinstance(item[3], dict) else {}
        for key in ATTENTION_INPUTS:
            if isinstance(extra.get(key), list) and extra[key] and isinstance(extra[key][0], str):
                refs.append(_ref(extra.pop(key), problems))
        if any(isinstance(v, list) and v and isinstance(v[0], str) for v in extra.values()):
            problems.add(f"layer '{layer}' is called with tensor keyword arguments "
                         f"(e.g. a mask); not supported")
    return refs


#: MultiHeadAttention's tensor keywords, in the order our layer takes its inputs
ATTENTION_INPUTS = ("query", "value", "key")
#: call arguments Keras records with a call that are layer arguments here
CALL_ARGUMENTS = ("use_causal_mask",)


def _call_arguments(node):
    """The known non-tensor call arguments of one call (both Keras forms)."""
    if isinstance(node, dict):
        kwargs = node.get("kwargs", {})
    else:
        kwargs = {}
        for item in node:
            if len(item) > 3 and isinstance(item[3], dict):
                kwargs.update(item[3])
    return {k: kwargs[k] for k in CALL_ARGUMENTS if k in kwargs}


def _keras_tensors(value, out):
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            out.append(value["config"]["keras_history"])
            return
        for v in value.values():
            _keras_tensors(v, out)
    elif isinstance(value, list):
        for v in value:
            _keras_tensors(v, out)
