"""Functional models: named inputs, layers that name their inputs, several outputs,
and shared layers (one layer, its weights used at several places).

    model:
      inputs: {image: {shape: [8, 8]}, meta: {shape: [6]}}
      layers:
        - Flatten: {inputs: image}            # no name: called `flatten`
        - Concatenate: {name: merged, inputs: [flatten, meta]}
        - Dense: {name: label, units: 4, activation: softmax}   # takes `merged`
        - {call: label, inputs: other, name: label_2}          # the same weights again
      outputs: [label]

A layer with several outputs (an RNN with ``return_state``) is referred to as
``name:k`` for its output k (``name`` alone is output 0), e.g. an LSTM's h and c as
``encoder:1`` and ``encoder:2``; given to a recurrent layer after its input, they are
its initial states: ``inputs: [dec_in, "encoder:1", "encoder:2"]``.

Every config entry becomes one call of a layer (a node of the engine Graph). A layer
without ``inputs`` takes the entry written before it (the only model input for the
first entry). Entries are placed in topological order, in config order where the
graph allows, so a chain builds (and draws its initial weights) in the same order as
the equivalent Sequential model. Everything is checked here, before any data is read.
"""

import heapq
import re

import numpy as np

from trainer.build.common import PLACEMENT, dotted, make_layer
from trainer.engine.layer import Namer
from trainer.engine.graph import Graph
from trainer.errors import ConfigError
from trainer.config.registry import suggest


_OUTPUT = re.compile(r"(.+):(\d+)")


def _base(ref):
    """The entry part of a reference: ``encoder:1`` → ``encoder``."""
    m = _OUTPUT.fullmatch(ref)
    return m.group(1) if m else ref


class Entry:
    """One line of ``model.layers``: a new layer or another call of an earlier one."""

    def __init__(self, index, layer, ref, refs, refs_key, call_index):
        self.index = index
        self.layer = layer
        self.ref = ref  # the name later entries and outputs use for this entry's output
        self.refs = refs  # the names of its inputs
        self.refs_key = refs_key  # key path of its `inputs` (for error places)
        self.call_index = call_index  # 0 for the defining entry, then 1, 2, ... per call

    @property
    def keypath(self):
        return ("model", "layers", self.index)

    @property
    def names(self):
        """What refers to this entry's output: its name, and Keras's ``layer[call]``."""
        node = f"{self.layer.name}[{self.call_index}]"
        return [self.ref, node] if self.ref else [node]

    @property
    def label(self):
        return self.names[0]


def build_functional(cfg, rng):
    """The Graph of a functional ``cfg['model']``, shape-checked and initialised."""
    model_cfg = cfg["model"]
    for key in ("inputs", "outputs", "layers"):
        if not model_cfg.get(key):
            raise ConfigError(f"model.{key}: a functional model needs `inputs` (names with "
                              f"shapes), `layers` and `outputs` (layer names)",
                              where=cfg.where(("model",)))
    if "input_shape" in model_cfg:
        raise ConfigError("model.input_shape: a functional model gives its input shapes "
                          "under model.inputs", where=cfg.where(("model", "input_shape")))
    namer = Namer()
    input_names = list(model_cfg["inputs"])
    for name in input_names:
        namer.claim(name, cfg.where(("model", "inputs", name)))
    entries = _entries(cfg, namer, input_names)
    order = _topological(cfg, entries, input_names)
    _check_reachable(cfg, entries, input_names)
    return _build(cfg, entries, order, input_names, rng)


def _entries(cfg, namer, input_names):
    """Config entries → Entry objects; names claimed and references written out."""
    specs = cfg["model"]["layers"]
    entries, layers = [], {}
    calls = {}  # layer name → number of calls so far
    for i, spec in enumerate(specs):
        keypath = ("model", "layers", i)
        if isinstance(spec, dict) and "call" in spec:
            target = spec["call"]
            if target not in layers:
                known = list(layers)
                raise ConfigError(
                    f"{dotted(keypath)}.call: no layer '{target}' written before this entry "
                    f"to call again.{suggest(target, known)} Layers so far: "
                    f"{', '.join(known) or 'none'}", where=cfg.where(keypath + ("call",)))
            layer = layers[target]
            ref = namer.claim(spec["name"], cfg.where(keypath + ("name",))) \
                if "name" in spec else None
            raw, refs_key = spec.get("inputs"), keypath + ("inputs",)
            calls[target] += 1
            call_index = calls[target]
        else:
            layer, placement = make_layer(spec, keypath, cfg, namer)
            # where its placement keys are written: under the layer's name, or at the
            # entry itself for a user layer ({layer: "module:Class", inputs: ...})
            at = () if isinstance(spec, dict) and "layer" in spec else \
                (next(iter(spec)) if isinstance(spec, dict) else spec,)
            if type(layer).__name__ == "InputLayer":
                raise ConfigError(f"{dotted(keypath)}: a functional model declares its "
                                  f"inputs under model.inputs, not as Input layers",
                                  where=cfg.where(keypath))
            misplaced = [k for k in PLACEMENT if k != "inputs" and k in placement]
            if misplaced:
                raise ConfigError(f"{dotted(keypath)}: `{misplaced[0]}` is for Sequential "
                                  f"models; give input shapes under model.inputs",
                                  where=cfg.where(keypath + at + (misplaced[0],)))
            layers[layer.name] = layer
            calls[layer.name] = 0
            ref, call_index = layer.name, 0
            raw, refs_key = placement.get("inputs"), keypath + at + ("inputs",)
        if raw is None:
            refs = _default_input(cfg, keypath, entries, input_names)
        else:
            refs = [raw] if isinstance(raw, str) else list(raw)
        entries.append(Entry(i, layer, ref, refs, refs_key, call_index))
    return entries


def _default_input(cfg, keypath, entries, input_names):
    """A layer without `inputs` takes the entry written before it."""
    if entries:
        return [entries[-1].label]
    if len(input_names) != 1:
        raise ConfigError(f"{dotted(keypath)}: the first layer needs `inputs`, since the "
                          f"model has {len(input_names)} inputs ({', '.join(input_names)})",
                          where=cfg.where(keypath))
    return [input_names[0]]


def _by_name(entries):
    return {n: k for k, e in enumerate(entries) for n in e.names}


def _producers(cfg, entries, input_names):
    """Reference name → entry index (model inputs are not in it); unknown names fail
    here, with a suggestion."""
    by_ref = _by_name(entries)
    known = list(input_names) + [e.label for e in entries]
    for e in entries:
        for j, r in enumerate(e.refs):
            if _base(r) not in by_ref and _base(r) not in input_names:
                where = cfg.where(e.refs_key + ((j,) if len(e.refs) > 1 else ()))
                hint = suggest(r, known)
                raise ConfigError(
                    f"{dotted(e.keypath)}: unknown input '{r}' of layer '{e.layer.name}'."
                    f"{hint} Known names: {', '.join(known)}", where=where)
    return by_ref


def _topological(cfg, entries, input_names):
    """Entry indices in an order where every input comes first: config order wherever
    the graph allows. A cycle fails, naming the layers in it."""
    by_ref = _producers(cfg, entries, input_names)
    deps = [{by_ref[_base(r)] for r in e.refs if _base(r) in by_ref} for e in entries]
    users = [[] for _ in entries]
    for k, ds in enumerate(deps):
        for d in ds:
            users[d].append(k)
    waiting = [len(ds) for ds in deps]
    ready = [k for k, n in enumerate(waiting) if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        k = heapq.heappop(ready)
        order.append(k)
        for u in users[k]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) < len(entries):
        # every entry left waits on another one left: walk back to a repeat
        left = [k for k in range(len(entries)) if waiting[k]]
        path, k = [], left[0]
        while k not in path:
            path.append(k)
            k = min(d for d in deps[k] if waiting[d])
        cycle = path[path.index(k):] + [k]
        names = " → ".join(entries[c].label for c in reversed(cycle))
        raise ConfigError(f"model.layers: the layers form a cycle: {names}",
                          where=cfg.where(entries[k].keypath))
    return order


def _check_reachable(cfg, entries, input_names):
    """Outputs exist and are layers; every input and every layer leads to an output."""
    outputs = cfg["model"]["outputs"]
    by_ref = _by_name(entries)
    for j, name in enumerate(outputs):
        where = cfg.where(("model", "outputs", j))
        if name in input_names:
            raise ConfigError(f"model.outputs[{j}]: '{name}' is a model input; an output "
                              f"must be a layer that depends on the inputs", where=where)
        if _base(name) not in by_ref:
            known = [e.label for e in entries]
            raise ConfigError(f"model.outputs[{j}]: unknown output '{name}'."
                              f"{suggest(name, known)} Layers: {', '.join(known)}",
                              where=where)
        if outputs.index(name) != j:
            raise ConfigError(f"model.outputs[{j}]: '{name}' is listed twice", where=where)
    needed, used_inputs = set(), set()
    stack = [by_ref[_base(n)] for n in outputs]
    while stack:
        k = stack.pop()
        if k in needed:
            continue
        needed.add(k)
        for r in entries[k].refs:
            if _base(r) in by_ref:
                stack.append(by_ref[_base(r)])
            else:
                used_inputs.add(_base(r))
    for name in input_names:
        if name not in used_inputs:
            raise ConfigError(f"model.inputs.{name}: input '{name}' is not used by any "
                              f"output (outputs: {', '.join(outputs)})",
                              where=cfg.where(("model", "inputs", name)))
    for k, e in enumerate(entries):
        if k not in needed:
            raise ConfigError(f"{dotted(e.keypath)}: layer '{e.label}' does not lead to "
                              f"any output (outputs: {', '.join(outputs)}); add it to "
                              f"model.outputs, or give the next layer `inputs`",
                              where=cfg.where(e.keypath))


def _build(cfg, entries, order, input_names, rng):
    inputs = cfg["model"]["inputs"]
    graph = Graph(input_names, [tuple(inputs[n]["shape"]) for n in input_names])
    graph.functional = True
    dtype = np.dtype(cfg.get("dtype", "float32"))
    tensor_of = {}  # reference → tensor index
    for i, name in enumerate(input_names):
        tensor_of.update({name: i, f"{name}:0": i})
    for k in order:
        e = entries[k]
        if not e.layer.built:
            e.layer.dtype = dtype.type
        for j, r in enumerate(e.refs):
            _check_output_index(cfg, r, tensor_of, graph,
                                e.refs_key + ((j,) if len(e.refs) > 1 else ()), e.keypath)
        args = [tensor_of[r] for r in e.refs]
        try:
            t = graph.add(e.layer, args, rng)
        except ConfigError as exc:
            got = ", ".join(f"{r} {(None, *graph.shapes[a])}" for r, a in zip(e.refs, args))
            raise ConfigError(f"{dotted(e.keypath)}: {exc.message} (inputs: {got})",
                              where=cfg.where(e.keypath)) from None
        graph.nodes[-1].call_index = e.call_index
        ts = t if isinstance(t, list) else [t]
        for n in e.names:
            tensor_of[n] = ts[0]
            tensor_of.update({f"{n}:{j}": tj for j, tj in enumerate(ts)})
    outputs = cfg["model"]["outputs"]
    for j, name in enumerate(outputs):
        _check_output_index(cfg, name, tensor_of, graph, ("model", "outputs", j),
                            ("model", "outputs", j))
    graph.outputs = [tensor_of[n] for n in outputs]
    graph.output_names = list(outputs)
    return graph


def _check_output_index(cfg, ref, tensor_of, graph, keypath, place):
    """``name:k`` names an output the layer has (the name itself was checked before)."""
    if ref in tensor_of:
        return
    base = _base(ref)
    first = tensor_of[base]
    node = graph.producer[first]
    n = 1 if node is None else len(node.outputs)
    have = f"{base}:0" if n == 1 else f"{base}:0 .. {base}:{n - 1}"
    why = ""
    if n == 1 and node is not None:
        why = " (an RNN gives its states with return_state: true)"
    raise ConfigError(f"{dotted(place)}: '{ref}' refers to output {ref[len(base) + 1:]} of "
                      f"'{base}', which has {n} output{'s' if n > 1 else ''} ({have}){why}",
                      where=cfg.where(keypath))
