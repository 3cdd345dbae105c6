"""The walk: a built Model → an ONNX ModelProto, checked, then written atomically.

Every node of the model's graph goes through its layer's converter (registry.py) in
topological order; masks (Embedding(mask_zero), Masking) travel beside the tensors as
float (batch, time) tensors, as Graph.forward passes them. The graph's inputs and
outputs keep the model's names; their first axis is the symbolic ``batch``.
"""

import json

from trainer import __version__
from trainer.errors import ConfigError
from trainer.onnx_io.context import DEFAULT, Context
from trainer.onnx_io.registry import layer_converter

#: the ONNX opset written (ONNX Runtime 1.14+ and every current serving stack read it)
OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17


def unsupported_layers(model):
    """The layers of ``model`` that have no converter, as "name (Class)" strings
    (a wrapper names the layer it wraps)."""
    out = []
    for layer in model.graph.layers():
        inner = getattr(layer, "layer", None)  # TimeDistributed / Bidirectional
        for part in ([layer] if inner is None else [layer, inner]):
            if layer_converter(part) is None:
                out.append(f"{part.name} ({type(part).__module__}:{type(part).__name__})")
    return out


def refuse_unsupported(model):
    """A ConfigError naming every layer without a converter (user layers)."""
    missing = unsupported_layers(model)
    if missing:
        raise ConfigError(f"export to ONNX: no ONNX form for layer(s) {', '.join(missing)}"
                          f"; nothing was written")


def build_proto(model, metadata=None, preprocess=None):
    """The ONNX ModelProto of ``model`` (checked). ``preprocess``: {input name:
    [steps]} to prepend; ``metadata``: {key: value} for metadata_props."""
    import onnx
    from onnx import TensorProto, helper

    refuse_unsupported(model)
    graph = model.graph
    ctx = Context()
    values, masks, inputs = {}, {}, []
    for i, name in enumerate(graph.input_names):
        ctx.reserve(name)
        shape = graph.shapes[i]
        steps = (preprocess or {}).get(name)
        if steps:
            from trainer.onnx_io.preprocess import prepend

            values[i], shape = prepend(ctx, name, steps, shape)
        else:
            values[i] = name
        ints = i in getattr(model, "_int_inputs", ()) and not steps  # token ids
        inputs.append(helper.make_tensor_value_info(
            name, TensorProto.INT64 if ints else TensorProto.FLOAT, _dims(name, shape)))
    for name in model.output_names:
        ctx.reserve(name)
    for node in graph.nodes:
        _convert(ctx, node, values, masks)
    outputs, seen = [], set()
    for name, t in zip(model.output_names, graph.outputs):
        if name in seen:
            continue
        seen.add(name)
        ctx.prefix = name
        ctx.op("Identity", [values[t]], [name])
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                     _dims(name, graph.shapes[t])))
    body = helper.make_graph(ctx.nodes, model.name, inputs, outputs, ctx.initializers)
    proto = helper.make_model(body, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="trainer", producer_version=__version__,
                              ir_version=IR_VERSION)
    meta = {"trainer_version": __version__, "opset": str(OPSET),
            "layer_names": json.dumps([layer.name for layer in graph.layers()]),
            **{k: str(v) for k, v in (metadata or {}).items() if v is not None}}
    helper.set_model_props(proto, meta)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise RuntimeError(f"the ONNX graph failed onnx.checker: {exc}") from exc
    return proto


def _convert(ctx, node, values, masks):
    layer = node.layer
    ctx.begin(layer)
    xs = [values[i] for i in node.inputs]
    ms = [masks.get(i) for i in node.inputs]
    outs = layer_converter(layer)(ctx, layer, xs, ms)
    if ctx.out_mask is DEFAULT:
        mask = ms[0] if layer.passes_mask and not layer.multi_input else None
    else:
        mask = ctx.out_mask
    for k, (t, name) in enumerate(zip(node.outputs, outs)):
        values[t] = name
        masks[t] = mask if k == 0 else None


def _dims(name, shape):
    if shape is None:
        return None  # any rank (an input reshaped by its preprocessing)
    return ["batch", *(d if d is not None else f"{name}_dim{k + 1}"
                       for k, d in enumerate(shape))]


def export_model(model, path, metadata=None, preprocess=None):
    """Write ``model`` as an ONNX file at ``path`` (atomically: temp file, fsync,
    rename); the file is complete or absent. Return the path."""
    from pathlib import Path

    import onnx

    from trainer.fileio import atomic_path

    path = Path(path)
    if not path.parent.is_dir():
        raise ConfigError(f"export: the folder {path.parent} does not exist (create it "
                          f"first); nothing was written")
    proto = build_proto(model, metadata, preprocess)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(proto.SerializeToString())
    return path
