"""A static graph of layer calls: built and shape-checked once, then run many times.

Nodes are kept in topological order. ``forward`` runs them in order and keeps each
node's backward closure; ``backward`` walks them in reverse, adding the gradient of
every consumer into its producer (``+=``), and checks every gradient's shape
against its tensor's.
"""


class Node:
    """One call of a layer on the outputs of earlier nodes (or of graph inputs)."""

    def __init__(self, layer, inputs):
        self.layer = layer
        self.inputs = inputs  # indices into Graph.tensors
        self.shape = None
        self.input_grad = True  # False when every input is a graph input


class Graph:
    """Inputs, nodes in topological order, outputs.

    Tensors are numbered: first the graph inputs, then one per node, so node ``i``
    produces tensor ``len(inputs) + i``.
    """

    def __init__(self, input_names, input_shapes):
        self.input_names = list(input_names)
        self.shapes = [tuple(s) for s in input_shapes]
        self.nodes = []
        self.outputs = []
        self._backs = None

    @property
    def n_inputs(self):
        return len(self.input_names)

    def add(self, layer, inputs, rng):
        """Call ``layer`` on tensor indices ``inputs``; build it on first call."""
        in_shapes = [self.shapes[i] for i in inputs]
        if layer.multi_output:
            raise layer.error("gives several outputs (return_state), which a model graph "
                              "can't use yet; use it inside Bidirectional or call it directly")
        if not layer.multi_input and len(inputs) != 1:
            raise layer.error(f"takes one input, got {len(inputs)}")
        shape_arg = in_shapes if layer.multi_input else in_shapes[0]
        if not layer.built:
            out_shape = layer.build(shape_arg, rng)
            layer.built = True
            layer.input_shape = shape_arg
            layer.output_shape = tuple(out_shape)
        else:
            if shape_arg != layer.input_shape:
                raise layer.error(
                    f"shared layer called on shape {shape_arg}, but it was built for "
                    f"{layer.input_shape}"
                )
            out_shape = layer.output_shape
        out_shape = tuple(out_shape)
        if any(d is not None and d <= 0 for d in out_shape):
            raise layer.error(f"output shape {out_shape} has an empty dimension "
                              f"(input shape {shape_arg})")
        node = Node(layer, list(inputs))
        node.shape = out_shape
        node.input_grad = any(i >= self.n_inputs for i in inputs)
        self.nodes.append(node)
        self.shapes.append(out_shape)
        return len(self.shapes) - 1

    def layers(self):
        """Each distinct layer once, in first-call order."""
        seen, out = set(), []
        for node in self.nodes:
            if id(node.layer) not in seen:
                seen.add(id(node.layer))
                out.append(node.layer)
        return out

    def forward(self, xs, training=False):
        """Run the graph on input arrays; keep the backward closures when training."""
        values = list(xs)
        masks = [None] * len(values)  # Keras masks (mask_zero), one per tensor or None
        backs = []
        for node in self.nodes:
            layer = node.layer
            args = [values[i] for i in node.inputs]
            # a hint layers may take: the gradient of a graph input is never used,
            # so a first convolution can skip computing it (backward returns None)
            layer.needs_input_grad = node.input_grad
            arg = args if layer.multi_input else args[0]
            mask = None if layer.multi_input else masks[node.inputs[0]]
            if mask is not None and layer.takes_mask:
                y, back = layer.forward(arg, training, mask=mask)
            else:
                y, back = layer.forward(arg, training)
            values.append(y)
            masks.append(layer.compute_mask(arg, mask))
            backs.append(back)
        self._backs = backs if training else None
        self._values_shapes = [v.shape for v in values]
        return [values[i] for i in self.outputs]

    def backward(self, douts):
        """Gradients of the outputs → weight gradients (in each layer's ``grads``)
        and the gradients of the graph inputs, which are returned."""
        assert self._backs is not None, "backward needs forward(training=True) first"
        for layer in self.layers():
            layer.zero_grads()
        grads = [None] * len(self.shapes)
        for i, d in zip(self.outputs, douts):
            grads[i] = d if grads[i] is None else grads[i] + d
        first = self.n_inputs
        for k in range(len(self.nodes) - 1, -1, -1):
            dy = grads[first + k]
            if dy is None:
                continue  # this node feeds no output
            node = self.nodes[k]
            assert dy.shape == self._values_shapes[first + k], (
                f"gradient shape {dy.shape} != tensor shape "
                f"{self._values_shapes[first + k]} at layer {node.layer.name}")
            dx = self._backs[k](dy)
            dxs = dx if node.layer.multi_input else [dx]
            for i, g in zip(node.inputs, dxs):
                if g is None:
                    continue
                grads[i] = g if grads[i] is None else grads[i] + g
            grads[first + k] = None  # free memory early
        self._backs = None
        return grads[:first]

