"""Chains of graph nodes that run as one step (Graph.forward): fewer activations
alive and kept, fewer passes over memory. Four kinds, asked of the layers in the
chain (the normalization's ``folds_into`` and ``epilogue``, the dense layers'
``inference_step``, the convolutions' ``chain_stage``; the engine knows no layer
classes):

- Where no backward will run (inference; a frozen base in training), a convolution
  → normalization on moving statistics → epilogue runs as one convolution with the
  normalization folded into its weights (ONNX Runtime's and PyTorch's conv-BN
  fusion): ``w' = w·s``, ``b' = (b - mean)·s + beta``, ``s = gamma/sqrt(var + eps)``,
  made on each call from the weights as they are then (never stored).
- While training, a normalization → epilogue runs as the normalization then the
  epilogue in place on its fresh output, with one backward: the chain keeps the
  epilogue's output (the relu mask, which the next layer keeps anyway), not the
  normalization's output and the Add's output besides. A normalization with a
  ``forward_chain`` runs the epilogue inside its own passes when it can
  (BatchNormalization's compiled training passes): the same bits.
- Where no backward runs, a chain of dense steps — a Dense, then Dense, Dropout (at
  inference) and Activation layers, each the only reader of the one before — runs as
  one ``dense_chain.run``: each block of rows through the whole chain, one parallel
  region per call (kernels/dense_chain.py).
- Where no backward runs, a chain of direct convolutions — convolutions whose
  ``chain_stage`` gives a stage, each with the 2×2 max pool reading it when the stage
  takes it, and layers that are the identity there (Dropout at inference) between
  them, each the only reader of the one before; two convolutions at least, or one
  with its pool — runs as one ``direct_conv.forward_chain``: sample by sample through
  every stage, the pools inside the kernels (kernels/direct_conv.py). A convolution a
  normalization folds into ends a chain before it (the fold wins). The tensors inside
  it are made one sample at a time, never for the rows (``Group.per_sample``:
  inference blocks are sized without them, ``Graph.inference_shapes``).

A normalization chain's epilogue is a relu, or an Add (of one other tensor, ready
before the chain starts) then a relu — a residual block's end. Each node of a chain
but the last has one reader (the next) and is no graph output; no node of a chain
has an activity regularizer. The results are the same bits as the nodes run one by
one (a sum of two is commutative; max(x, 0) in place is max(x, 0)), except the
folded convolution, which rounds differently (within float32 tolerance,
tests/test_bn_fold.py), and the Dense chains (cut into other GEMMs;
tests/test_dense_chain.py); the convolution chains are the same bits
(tests/test_conv_chains.py).
"""

import numpy as np

from trainer.engine.kernels import dense_chain, direct_conv, fused


class Group:
    """A chain run by its first node: reads tensor ``x`` (and ``other``, an Add's
    other input, or None) and produces tensor ``out``; ``run(x, other, training)`` →
    (y, backward or None), backward(dy) → (dx, d_other)."""

    def __init__(self, x, other, out, run, passes_mask, per_sample=(), threads=False):
        self.x, self.other, self.out, self.run = x, other, out, run
        self.passes_mask = passes_mask  # the output's mask is x's (and other's)
        #: ``run`` cuts its rows over the engine's threads itself, in blocks fixed by
        #: the shape (a dense chain): a caller need not cut them first
        self.threads = threads
        #: the tensors inside the chain that it makes one sample at a time, never for
        #: the rows it is given (Graph.inference_shapes leaves them out)
        self.per_sample = tuple(per_sample)

    def mask(self, masks):
        """The output's Keras mask: the AND of those of x (when the first layer passes
        it) and of the Add's other input that have one, as the layers would give."""
        found = [m for m in ((masks[self.x] if self.passes_mask else None),
                             None if self.other is None else masks[self.other])
                 if m is not None]
        if not found:
            return None
        return found[0] if len(found) == 1 else np.logical_and(*found)


def plan(graph, training, needed):
    """({first node: Group}, {the other nodes of the chains}) of ``graph``."""
    consumers = graph._consumers()
    outputs = set(graph.outputs)
    nodes = graph.nodes
    groups, members = {}, set()

    def only_reader(k):
        node = nodes[k]
        if len(node.outputs) != 1 or node.outputs[0] in outputs:
            return None
        readers = consumers[node.outputs[0]]
        if len(readers) != 1 or (training and needed[readers[0]] != needed[k]):
            return None
        return readers[0]

    for k, node in enumerate(nodes):
        if k in members or node.listed or len(node.outputs) != 1:
            continue
        chain = _dense_chain(nodes, k, training, needed, only_reader)
        if chain is not None:
            members.update(chain[1:])
            groups[k] = _dense_group(nodes, chain, whole=len(chain) == len(nodes))
            continue
        if not (training and needed[k]):  # no backward: direct convolutions
            chain = _conv_chain(nodes, k, training, only_reader)
            if chain is not None:
                members.update(j for j, _ in chain[1:])
                groups[k] = _conv_group(nodes, chain)
                continue
        if training and needed[k]:  # a backward runs: a normalization chain
            if not hasattr(node.layer, "epilogue"):
                continue
            head, norm, producer = k, k, None
        else:  # no backward: a convolution with a normalization folded in
            norm = only_reader(k)
            if norm is None or nodes[norm].listed:
                continue
            if not getattr(nodes[norm].layer, "folds_into", lambda *a: False)(
                    node.layer, training):
                continue
            head, producer = k, node.layer
        after, j = [], norm
        while len(after) < 2 and (j := only_reader(j)) is not None:
            after.append(j)
        epilogue = list(nodes[norm].layer.epilogue([nodes[j].layer for j in after]))
        other = None
        if "add" in epilogue:
            at = epilogue.index("add")
            reads = nodes[norm if at == 0 else after[at - 1]].outputs[0]
            other = _add_operand(nodes[after[at]], reads, nodes[head])
            if other is None:  # an Add the chain cannot take: stop before it
                epilogue = epilogue[:at]
        chain = ([norm] if producer is not None else []) + after[:len(epilogue)]
        if producer is None and not epilogue:
            continue  # a normalization alone: nothing to gain
        if any(nodes[j].layer.activity_regularizer is not None for j in (head, *chain)):
            continue  # a penalty on an output the chain never makes
        members.update(c for c in chain if c != head)
        last = nodes[chain[-1]] if chain else node
        run = (_folded_run(nodes[norm].layer, producer, tuple(epilogue))
               if producer is not None else _norm_run(node.layer, tuple(epilogue)))
        groups[head] = Group(node.inputs[0], other, last.outputs[0], run,
                             passes_mask=producer is None and node.layer.passes_mask)
    return groups, members


def _dense_chain(nodes, k, training, needed, only_reader):
    """The nodes of the dense chain that node ``k`` starts — a Dense whose backward
    does not run, then each next only reader with an inference step of its own (one
    at least) — or None."""

    def step(j):
        node = nodes[j]
        if (node.listed or len(node.outputs) != 1 or (training and needed[j])
                or node.layer.activity_regularizer is not None):
            return None
        hook = getattr(node.layer, "inference_step", None)
        return None if hook is None else hook(training)

    if not isinstance(step(k), dense_chain.Dense):
        return None
    chain = [k]
    while (j := only_reader(chain[-1])) is not None and step(j) is not None:
        chain.append(j)
    return chain if len(chain) > 1 else None  # a lone Dense runs as it is


def _dense_group(nodes, chain, whole):
    """The Group running ``chain`` (see ``_dense_chain``) through dense_chain.run, with
    the steps the layers give on each call (their weights as they are then). ``whole``:
    the chain is the whole graph, so it takes the whole batch (Model.predict_on_batch
    does not cut it first: ``Graph.threads_itself``) and cuts it over the engine's
    threads in parts as small as the model's would be (dense_chain.WHOLE_MIN_ROWS)."""
    layers = [nodes[j].layer for j in chain]
    min_rows = dense_chain.WHOLE_MIN_ROWS if whole else dense_chain.MIN_ROWS

    def run(x, other, training):
        steps = [s for s in (layer.inference_step(training) for layer in layers)
                 if s is not dense_chain.IDENTITY]
        return dense_chain.run(x, steps, min_rows), None

    return Group(nodes[chain[0]].inputs[0], None, nodes[chain[-1]].outputs[0], run,
                 passes_mask=all(layer.passes_mask for layer in layers), threads=whole)


def _conv_chain(nodes, k, training, only_reader):
    """The chain of direct convolutions node ``k`` starts, as [(node, stage function
    or None)]: convolutions (each with its stage function, ``chain_stage``), the max
    pool reading one when it takes it, and layers that are the identity where no
    backward runs (Dropout at inference: ``inference_step``) between them (None), each
    the only reader of the one before, the last a convolution or its pool. None
    unless there are two convolutions, or one taking a pool."""

    def plain(j):
        node = nodes[j]
        return not (node.listed or len(node.outputs) != 1
                    or node.layer.activity_regularizer is not None)

    chain, ends, convs, pooled, j = [], 0, 0, False, k
    while j is not None and plain(j):
        layer = nodes[j].layer
        hook = getattr(layer, "chain_stage", None)
        if hook is None:  # an identity between two stages, or the chain's end
            step = getattr(layer, "inference_step", None)
            if not convs or step is None or step(training) is not dense_chain.IDENTITY:
                break
            chain.append((j, None))
            j = only_reader(j)
            continue
        r = only_reader(j)
        if r is not None and getattr(nodes[r].layer, "folds_into", lambda *a: False)(
                layer, training):
            break  # a normalization folds into it (below): that chain wins
        with_pool = None if r is None or not plain(r) else hook(nodes[r].layer, training)
        stage = with_pool or hook(None, training)
        if stage is None:
            break
        chain.append((j, stage))
        convs += 1
        if with_pool is not None:
            chain.append((r, None))
            pooled, r = True, only_reader(r)
        ends, j = len(chain), r
    if convs < 2 and not pooled:
        return None
    return chain[:ends]  # without identities after the last stage


def _conv_group(nodes, chain):
    """The Group running a ``_conv_chain`` as direct_conv.forward_chain, or where a
    stage is not the direct path on the input it gets, as the layers' own forwards
    one after the other (the same numbers as unfused)."""
    layers = [nodes[j].layer for j, _ in chain]
    stage_fns = [fn for _, fn in chain if fn is not None]

    def run(x, other, training):
        stages, shape = [], x.shape
        for fn in stage_fns:
            st = fn(shape, x.dtype)
            if st is None:
                break
            stages.append(st)
            h, w = st.out_hw
            shape = (shape[0], *((h // 2, w // 2) if st.pool else (h, w)), st.W.shape[3])
        if len(stages) == len(stage_fns):
            return direct_conv.forward_chain(x, stages), None
        for layer in layers:
            layer.needs_input_grad = False  # as the graph sets it: no backward runs
            x = layer.forward(x, training)[0]
        return x, None

    return Group(nodes[chain[0][0]].inputs[0], None, nodes[chain[-1][0]].outputs[0], run,
                 passes_mask=all(layer.passes_mask for layer in layers),
                 per_sample=[t for j, _ in chain[:-1] for t in nodes[j].outputs])


def _add_operand(add, t, first):
    """The other input of a two-input Add reading tensor ``t``, when it exists before
    node ``first`` runs (tensors are numbered in node order); else None."""
    others = [i for i in add.inputs if i != t]
    if len(add.inputs) != 2 or len(others) != 1 or others[0] >= first.outputs[0]:
        return None
    return others[0]


def _epilogue(y, x, other, epilogue):
    """``+ other`` then relu, in place on ``y`` (a fresh output) where that is safe."""
    if other is not None:
        if (y.shape == other.shape and y.dtype == other.dtype and y.flags.writeable
                and not np.may_share_memory(y, other) and not np.may_share_memory(y, x)):
            np.add(y, other, out=y)  # a sum of two: the same bits as other + y
        else:
            y = y + other
    if "relu" in epilogue:
        if y.flags.writeable and not np.may_share_memory(y, x):
            np.maximum(y, 0, out=y)
        else:
            y = np.maximum(y, 0)
    return y


def _folded_run(norm, producer, epilogue):
    """The producer's inference forward with ``norm`` folded into its weights, then
    the epilogue (a lone relu fused into the convolution)."""
    conv_relu = epilogue == ("relu",)

    def run(x, other, training):
        y, _ = norm.folded(producer, conv_relu).forward(x, False)
        if conv_relu:
            return y, None
        return _epilogue(y, x, other, epilogue), None

    return run


def _norm_run(norm, epilogue):
    """The normalization's forward (training), then the epilogue in place; one
    backward through both: dy·(y > 0) (relu, as Relu's dy·(x > 0)), to the Add's other
    input as it is, and through the normalization."""
    relu = "relu" in epilogue
    add = "add" in epilogue

    def run(x, other, training):
        chain = getattr(norm, "forward_chain", None)  # the epilogue in its own passes
        done = None if chain is None else chain(x, other, relu, training)
        if done is not None:
            return done
        y, back = norm.forward(x, training)
        y = _epilogue(y, x, other, epilogue)

        def backward(dy):
            d = fused.relu_backward(dy, y) if relu else dy  # dy·(y > 0), one pass
            return back(d), (d if add else None)

        return y, backward

    return run
