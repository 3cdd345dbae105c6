"""A static graph of layer calls: built and shape-checked once, then run many times.

Nodes are kept in topological order. ``forward`` runs them in order and keeps each
node's backward closure; ``backward`` walks them in reverse, adding the gradient of
every consumer into its producer (``+=``), and checks every gradient's shape
against its tensor's.

A layer with several outputs (an RNN with ``return_state``) makes one node that
produces several tensors; its backward gets the gradients of all of them as one list
(None for a tensor nothing used) and is called once.
"""

from trainer.distributed import shard
from trainer.engine import fusion


class Node:
    """One call of a layer on the outputs of earlier nodes (or of graph inputs)."""

    def __init__(self, layer, inputs, listed):
        self.layer = layer
        self.inputs = inputs  # indices into Graph.tensors
        self.listed = listed  # the layer gets a list of inputs (and returns a list of grads)
        self.outputs = []  # the tensor indices it produces (several for multi_output)
        self.shapes = []  # their shapes

    @property
    def shape(self):
        """The shape of the (first) output."""
        return self.shapes[0]


class Graph:
    """Inputs, nodes in topological order, outputs.

    Tensors are numbered: first the graph inputs, then each node's outputs in node
    order (one per node, several for a multi-output layer); ``producer`` maps a
    tensor to its node.
    """

    def __init__(self, input_names, input_shapes):
        self.input_names = list(input_names)
        self.shapes = [tuple(s) for s in input_shapes]
        self.nodes = []
        self.outputs = []
        self.producer = [None] * len(self.shapes)  # tensor index → Node (None: input)
        #: backward returns the gradients of the graph inputs only when this is set
        #: (training never needs them: layers at the inputs skip computing them)
        self.input_gradients = False
        self._backs = None

    @property
    def n_inputs(self):
        return len(self.input_names)

    def add(self, layer, inputs, rng):
        """Call ``layer`` on tensor indices ``inputs``; build it on first call. Returns
        the output's tensor index (a list of them for a multi-output layer)."""
        in_shapes = [self.shapes[i] for i in inputs]
        # extra_inputs layers (an RNN given initial states) take a list when given several
        listed = layer.multi_input or (layer.extra_inputs and len(inputs) > 1)
        if not listed and len(inputs) != 1:
            raise layer.error(f"takes one input, got {len(inputs)}")
        shape_arg = in_shapes if listed else in_shapes[0]
        if not layer.built:
            out_shape = layer.build(shape_arg, rng)
            layer.built = True
            layer.input_shape = shape_arg
            layer.output_shape = ([tuple(s) for s in out_shape] if layer.multi_output
                                  else tuple(out_shape))
        elif shape_arg != layer.input_shape:
            raise layer.error(f"shared layer called on shape {shape_arg}, but it was built "
                              f"for {layer.input_shape}")
        out_shapes = layer.output_shape if layer.multi_output else [layer.output_shape]
        for out_shape in out_shapes:
            if any(d is not None and d <= 0 for d in out_shape):
                raise layer.error(f"output shape {out_shape} has an empty dimension "
                                  f"(input shape {shape_arg})")
        node = Node(layer, list(inputs), listed)
        node.shapes = list(out_shapes)
        node.outputs = list(range(len(self.shapes), len(self.shapes) + len(out_shapes)))
        self.nodes.append(node)
        self.shapes += node.shapes
        self.producer += [node] * len(out_shapes)
        return node.outputs if layer.multi_output else node.outputs[0]

    def layers(self):
        """Each distinct layer once, in first-call order (a fresh list each call)."""
        cached = getattr(self, "_layers", None)
        if cached is None or cached[0] != len(self.nodes):  # nodes are only ever added
            seen, out = set(), []
            for node in self.nodes:
                if id(node.layer) not in seen:
                    seen.add(id(node.layer))
                    out.append(node.layer)
            self._layers = cached = (len(self.nodes), out)
        return list(cached[1])

    def forward(self, xs, training=False, for_loss=False):
        """Run the graph on input arrays; keep the backward closures when training.
        ``for_loss``: return what the loss needs too, ``(outputs, masks, activity)``:
        each output's Keras mask ((N, T) booleans, from Embedding(mask_zero) or Masking
        through the layers that pass it, or None) and the sum of the layers' activity
        penalties (not yet divided by the batch size; the model divides, so slices of
        a batch add up).

        Memory: each tensor is dropped after its last consumer has run (the graph's
        outputs excepted), and a backward closure is kept only for a node whose
        backward will run (training, with trained weights at or above it) — so
        inference holds a few activations at a time, not all of them, and a frozen
        base under a new head keeps none of its caches. A convolution →
        normalization → relu (or → Add → relu) chain runs as one step
        (trainer/engine/fusion.py): folded into the convolution's weights where no
        backward runs, the normalization then the rest in place while training."""
        n_tensors = len(self.shapes)
        values = list(xs) + [None] * (n_tensors - len(xs))
        masks = [None] * n_tensors  # Keras masks (mask_zero), one per tensor or None
        sizes = [getattr(v, "shape", None) for v in values]  # for backward's checks
        needed, trains = self._needed_nodes()
        backs = [None] * len(self.nodes)
        last_use = self._last_use()
        groups, members = fusion.plan(self, training, needed)
        activity = 0.0
        for k, node in enumerate(self.nodes):
            layer = node.layer
            if k in members:  # run by its chain's first node (trainer/engine/fusion.py)
                self._free(k, node, values, masks, last_use)
                continue
            if k in groups:
                g = groups[k]
                y, back = g.run(values[g.x], None if g.other is None else values[g.other],
                                training)
                values[g.out], sizes[g.out], masks[g.out] = y, y.shape, g.mask(masks)
                if training and needed[k]:
                    backs[k] = back
                del y, back
                self._free(k, node, values, masks, last_use)
                continue
            # a hint layers may take: the gradient of an input with no trained weights
            # upstream (a graph input, a frozen base) is never used, so a first
            # convolution can skip computing it (backward returns None)
            upstream = any(trains[i] for i in node.inputs)
            layer.needs_input_grad = upstream or self.input_gradients
            arg = ([values[i] for i in node.inputs] if node.listed
                   else values[node.inputs[0]])
            mask = None if layer.multi_input else masks[node.inputs[0]]
            if node.listed and layer.takes_input_masks:
                mask = [masks[i] for i in node.inputs]  # one per input (attention)
                mask = mask if any(m is not None for m in mask) else None
            if mask is not None and layer.takes_mask:
                y, back = layer.forward(arg, training, mask=mask)
            else:
                y, back = layer.forward(arg, training)
            ys = y if layer.multi_output else [y]
            del y
            if layer.activity_regularizer is not None and (training or for_loss):
                # a loss needs it; plain inference (predict) does not pay for it
                activity += sum(layer.activity_regularizer.penalty(v) for v in ys)
                if training:
                    back = _with_activity_gradient(back, layer.activity_regularizer, ys,
                                                   layer.multi_output)
            if training and needed[k]:
                backs[k] = back
            del back  # inference: the closure (and what it holds) goes now
            out_mask = layer.compute_mask(arg, mask)
            for j, (t, v) in enumerate(zip(node.outputs, ys)):
                values[t], sizes[t] = v, v.shape
                masks[t] = out_mask if j == 0 else None
            del arg, ys, mask, out_mask, v  # no local keeps an activation alive
            self._free(k, node, values, masks, last_use)
        self._backs = backs if training else None
        self._needed = needed
        self._groups, self._members = groups, members
        self._values_shapes = sizes
        outs = [values[i] for i in self.outputs]
        return (outs, [masks[i] for i in self.outputs], activity) if for_loss else outs

    @staticmethod
    def _free(k, node, values, masks, last_use):
        """Drop the tensors whose last reader is node ``k`` (and node ``k``'s own
        outputs that nothing reads)."""
        for t in (*node.inputs, *node.outputs):
            if last_use[t] == k:
                values[t] = None
                masks[t] = None

    def inference_shapes(self):
        """The shapes of the tensors an inference forward makes for all its rows: not
        those inside a chain that makes them one sample at a time (a convolution
        chain: trainer/engine/fusion.py's ``Group.per_sample``)."""
        groups, _ = fusion.plan(self, False, self._needed_nodes()[0])
        inside = {t for group in groups.values() for t in group.per_sample}
        return [s for t, s in enumerate(self.shapes) if t not in inside]

    def threads_itself(self):
        """Whether an inference forward is one chain over the whole graph that cuts
        its rows over the engine's threads itself (a dense chain: ``Group.threads``),
        so a caller gains nothing by cutting a batch first."""
        groups, _ = fusion.plan(self, False, self._needed_nodes()[0])
        return any(g.threads for g in groups.values())

    def _needed_nodes(self):
        """Per node, whether its backward runs in training (trained weights at or
        upstream of it, or the graph's input gradients asked for); per tensor,
        whether trained weights lie upstream of it."""
        trains = [False] * self.n_inputs
        needed = []
        for node in self.nodes:
            layer = node.layer
            upstream = any(trains[i] for i in node.inputs)
            own = bool(layer.trainable and layer.params)
            needed.append(own or upstream or self.input_gradients)
            trains += [own or upstream] * len(node.outputs)
        return needed, trains

    def _consumers(self):
        """Tensor → the node indices that read it (a fresh computation per graph size)."""
        cached = getattr(self, "_consumer_cache", None)
        if cached is None or cached[0] != len(self.nodes):
            consumers = [[] for _ in self.shapes]
            for k, node in enumerate(self.nodes):
                for i in node.inputs:
                    if k not in consumers[i]:
                        consumers[i].append(k)
            self._consumer_cache = cached = (len(self.nodes), consumers)
        return cached[1]

    def _last_use(self):
        """Tensor → the index of the last node reading it (len(nodes): a graph
        output, kept; -1 for an input nothing reads)."""
        end = len(self.nodes)
        last = [max(c) if c else -1 for c in self._consumers()]
        for t in self.outputs:
            last[t] = end
        for node_k, node in enumerate(self.nodes):
            for t in node.outputs:
                if last[t] == -1:
                    last[t] = node_k  # nothing reads it: drop it at once
        return last

    def backward(self, douts, preactivation=()):
        """Gradients of the outputs → weight gradients (in each layer's ``grads``)
        and the gradients of the graph inputs, which are returned.

        ``preactivation``: positions of outputs whose gradient is given with respect
        to their layer's pre-activation (a fused softmax + cross-entropy); see
        ``fusable_output``."""
        assert self._backs is not None, "backward needs forward(training=True) first"
        for layer in self.layers():
            layer.zero_grads()
        grads = [None] * len(self.shapes)
        fused = {}
        for k, (i, d) in enumerate(zip(self.outputs, douts)):
            if k in preactivation:
                fused[i] = d
                continue
            grads[i] = d if grads[i] is None else grads[i] + d
        for k in range(len(self.nodes) - 1, -1, -1):
            node = self.nodes[k]
            if not self._needed[k] or k in self._members:  # nothing trains at or
                continue  # above it, or its chain's first node runs its backward
            # each closure goes once it has run: what it keeps is freed as the
            # backward walks down, not only at its end
            back, self._backs[k] = self._backs[k], None
            if k in self._groups:
                self._group_backward(self._groups[k], back, grads, node)
                continue
            if node.outputs[0] in fused:
                dx = back.preactivation(fused[node.outputs[0]])
                del back
                self._add_input_grads(node, dx, grads)
                continue
            dys = [grads[t] for t in node.outputs]
            if all(d is None for d in dys):
                continue  # this node feeds no output
            for t, d in zip(node.outputs, dys):
                assert d is None or d.shape == self._values_shapes[t], (
                    f"gradient shape {d.shape} != tensor shape "
                    f"{self._values_shapes[t]} at layer {node.layer.name}")
                grads[t] = None  # free memory early
            d = None
            dx = back(dys if node.layer.multi_output else dys[0])
            del back, dys
            self._add_input_grads(node, dx, grads)
        self._backs = None
        return grads[:self.n_inputs]

    def _group_backward(self, group, back, grads, node):
        """A chain's one backward (trainer/engine/fusion.py): the gradient of its
        output to those of its input and of an Add's other input."""
        dy = grads[group.out]
        if dy is None:
            return  # it feeds no output
        assert dy.shape == self._values_shapes[group.out], (
            f"gradient shape {dy.shape} != tensor shape "
            f"{self._values_shapes[group.out]} at layer {node.layer.name}")
        grads[group.out] = None
        dx, dother = back(dy)
        del back, dy
        for i, g in ((group.x, dx), (group.other, dother)):
            if g is not None:
                grads[i] = g if grads[i] is None else grads[i] + g

    @staticmethod
    def _add_input_grads(node, dx, grads):
        dxs = dx if node.listed else [dx]
        for i, g in zip(node.inputs, dxs):
            if g is None:
                continue
            grads[i] = g if grads[i] is None else grads[i] + g

    def fusable_output(self, k):
        """Whether output ``k`` is a softmax (over the last axis) of a Dense or
        Activation layer whose result feeds nothing else: its loss may then hand the
        gradient with respect to the softmax's input straight to that layer."""
        t = self.outputs[k]
        node = self.producer[t]
        if node is None:
            return False
        act = getattr(node.layer, "activation", None)
        if not node.layer.fuses_activation or node.layer.multi_output:
            return False
        if node.layer.activity_regularizer is not None:
            return False  # its penalty's gradient is wrt the softmax's output
        if getattr(act, "registered_name", None) != "softmax" or act.axis not in (-1,):
            return False
        consumers = sum(t in n.inputs for n in self.nodes) + self.outputs.count(t)
        return consumers == 1


def _with_activity_gradient(back, regularizer, ys, multi_output):
    """A layer's backward with its activity penalty's gradient (divided by the batch
    size, as Keras divides the penalty) added to each output's gradient."""
    n = shard.batch_size(len(ys[0]))  # the global batch's, when split over MPI ranks

    def backward(dy):
        dys = list(dy) if multi_output else [dy]
        for i, y in enumerate(ys):
            g = (regularizer.gradient(y) / n).astype(y.dtype, copy=False)
            dys[i] = g if dys[i] is None else dys[i] + g
        return back(dys if multi_output else dys[0])

    return backward
