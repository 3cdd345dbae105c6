"""The Keras-style model table: layer (type), output shape, params, connections.

Functional models get Keras's "Connected to" column: one row per layer (a shared
layer once), listing for each of its calls the tensors it was called on, written
``layer[call][k]`` as Keras writes ``layer[node_index][tensor_index]``. A layer with
several outputs (return_state) lists their shapes in one row, as Keras does.
"""


def _shape(shape):
    return str((None, *shape))


def _shapes(node):
    if len(node.shapes) == 1:
        return _shape(node.shape)
    return "[" + ", ".join(_shape(s) for s in node.shapes) + "]"


def _is_functional(graph):
    return getattr(graph, "functional", False) or graph.n_inputs > 1 or len(graph.outputs) > 1


def summary_rows(model):
    """(layer "name (Type)", output shape, params, connected-to list) per layer."""
    g = model.graph
    # tensor index → "layer[call][0]" as a consumer names it
    producer = {i: f"{name}[0][0]" for i, name in enumerate(g.input_names)}
    calls = {}
    rows = [(f"{name} (InputLayer)", _shape(shape), 0, [])
            for name, shape in zip(g.input_names, g.shapes)]
    by_layer = {}
    for node in g.nodes:
        layer = node.layer
        call = getattr(node, "call_index", None)
        if call is None:
            call = calls.get(id(layer), 0)
        calls[id(layer)] = calls.get(id(layer), 0) + 1
        producer.update({t: f"{layer.name}[{call}][{j}]" for j, t in enumerate(node.outputs)})
        conns = [producer[i] for i in node.inputs]
        if id(layer) in by_layer:
            row = by_layer[id(layer)]
            row[3].extend(conns)
            if row[1] != _shapes(node):
                row[1] = "multiple"
            continue
        row = [f"{layer.name} ({type(layer).__name__})", _shapes(node),
               sum(layer.count_params()), conns]
        by_layer[id(layer)] = row
        rows.append(row)
    return [tuple(r) for r in rows]


def user_code_rows(model, preprocessor=None):
    """(family, where/name, module:Name) of every component of the user's own that
    the model (and its preprocessing) uses, as ``trainer summary`` lists them."""
    rows = [("layer", layer.name, f"{type(layer).__module__}:{type(layer).__name__}")
            for layer in model.user_layers()]
    for layer in model.layers:
        for attr, value in vars(layer).items():
            if hasattr(value, "user_ref"):
                rows.append((value.user_kind, f"{layer.name}.{attr}", value.user_ref))
    for o in model.outputs:
        if hasattr(o.loss, "user_ref"):
            rows.append(("loss", o.name if model.multi_output else o.loss.name,
                         o.loss.user_ref))
        rows += [("metric", model._metric_key(o, m), m.user_ref)
                 for m in o.metrics if hasattr(m, "user_ref")]
    seen = set()  # an optimizer keeps its schedule under two names
    for attr, value in sorted(vars(model.optimizer or object()).items()):
        if hasattr(value, "user_ref") and id(value) not in seen:
            seen.add(id(value))
            rows.append((value.user_kind, f"optimizer.{attr}", value.user_ref))
    for role, per_name in (preprocessor.steps.items() if preprocessor else ()):
        for name, steps in per_name.items():
            rows += [("preprocessing step", f"{role}.{name}[{i}]", step.user_ref)
                     for i, step in enumerate(steps) if hasattr(step, "user_ref")]
    return rows


def render(model, console, functional=None, preprocessor=None):
    from rich.table import Table

    functional = _is_functional(model.graph) if functional is None else functional
    table = Table(title=f'Model: "{model.name}"', title_justify="left")
    table.add_column("Layer (type)")
    table.add_column("Output Shape")
    table.add_column("Param #", justify="right")
    if functional:
        table.add_column("Connected to")
    for name, shape, params, conns in summary_rows(model):
        cells = [name, shape, f"{params:,}"]
        table.add_row(*(cells + ["\n".join(conns)] if functional else cells))
    console.print(table)
    trainable, frozen = model.count_params()
    console.print(f"Total params: {trainable + frozen:,}")
    console.print(f"Trainable params: {trainable:,}")
    console.print(f"Non-trainable params: {frozen:,}")
    user = user_code_rows(model, preprocessor)
    if user:
        console.print("User code:")
        for kind, name, ref in user:
            console.print(f"  {kind} {name} ({ref})", highlight=False)
