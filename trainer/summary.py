"""The Keras-style model table: layer (type), output shape, params, connections."""


def _shape(shape):
    return str((None, *shape))


def summary_rows(model):
    """(layer "name (Type)", output shape, params, connected-to) per graph node."""
    g = model.graph
    names = list(g.input_names) + [n.layer.name for n in g.nodes]
    rows = []
    for name, shape in zip(g.input_names, g.shapes):
        rows.append((f"{name} (InputLayer)", _shape(shape), 0, ""))
    seen = set()
    for node in g.nodes:
        layer = node.layer
        params = 0 if id(layer) in seen else sum(layer.count_params())
        seen.add(id(layer))
        rows.append((f"{layer.name} ({type(layer).__name__})", _shape(node.shape), params,
                     ", ".join(names[i] for i in node.inputs)))
    return rows


def render(model, console, functional=None):
    from rich.table import Table

    functional = model.graph.n_inputs > 1 or len(model.graph.outputs) > 1 if functional is None \
        else functional
    table = Table(title=f'Model: "{model.name}"', title_justify="left")
    table.add_column("Layer (type)")
    table.add_column("Output Shape")
    table.add_column("Param #", justify="right")
    if functional:
        table.add_column("Connected to")
    for name, shape, params, conn in summary_rows(model):
        cells = [name, shape, f"{params:,}"]
        table.add_row(*(cells + [conn] if functional else cells))
    console.print(table)
    trainable, frozen = model.count_params()
    console.print(f"Total params: {trainable + frozen:,}")
    console.print(f"Trainable params: {trainable:,}")
    console.print(f"Non-trainable params: {frozen:,}")
