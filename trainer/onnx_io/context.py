"""The ONNX graph being built: nodes, initializers, unique names.

Nodes are named after the Keras layer that makes them (``dense_1/MatMul``,
``dense_1/Add``, ``conv2d/Conv``), as TensorFlow names its ops, so a node in a
profile or a viewer says which layer it belongs to.
"""

import numpy as np

from trainer.errors import ConfigError

#: ``ctx.out_mask`` before a converter sets it: the default mask rule applies
DEFAULT = object()


class Context:
    """Collects the nodes of one ONNX graph (a Scan body is a child context that
    shares names and initializers with its parent)."""

    def __init__(self, parent=None):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes = []
        self.initializers = parent.initializers if parent else []
        self._names = parent._names if parent else set()
        self.prefix = parent.prefix if parent else ""
        self.layer = parent.layer if parent else None
        self.out_mask = DEFAULT

    # -- names --------------------------------------------------------------
    def begin(self, layer):
        """Name what follows after ``layer`` (and reset its output mask)."""
        self.layer, self.prefix = layer, layer.name
        self.out_mask = DEFAULT

    def fresh(self, hint):
        base = f"{self.prefix}/{hint}" if self.prefix else hint
        name, k = base, 0
        while name in self._names:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    def reserve(self, name):
        self._names.add(name)
        return name

    def child(self):
        return Context(self)

    # -- constants ----------------------------------------------------------
    def const(self, value, hint="const", dtype=np.float32):
        """An initializer holding ``value`` (float32 unless ``dtype``); its name."""
        array = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        name = self.fresh(hint)
        self.initializers.append(self.numpy_helper.from_array(array, name))
        return name

    def ints(self, values, hint="shape"):
        return self.const(list(values), hint, np.int64)

    def scalar(self, value, hint="const"):
        return self.const(np.float32(value), hint)

    # -- nodes --------------------------------------------------------------
    def op(self, op_type, inputs, outputs=1, **attrs):
        """Add one node; return its output name (a list when ``outputs`` > 1 or is a
        list of names)."""
        names = outputs if isinstance(outputs, list) else \
            [self.fresh(f"{op_type}:{k}" if outputs > 1 else op_type)
             for k in range(outputs)]
        node_name = self.fresh(op_type)
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(self.helper.make_node(op_type, list(inputs), names,
                                                name=node_name, **attrs))
        return names if (isinstance(outputs, list) or outputs > 1) else names[0]

    # common small pieces
    def matmul_add(self, x, W, b=None, hint="kernel"):
        y = self.op("MatMul", [x, self.const(W, hint)])
        return y if b is None else self.op("Add", [y, self.const(b, "bias")])

    def transpose(self, x, perm):
        return self.op("Transpose", [x], perm=list(perm))

    def reshape(self, x, shape):
        """Reshape to ``shape`` (0 keeps the input's size there, -1 infers it)."""
        return self.op("Reshape", [x, self.ints(shape)])

    def unsupported(self, what):
        where = f"layer '{self.layer.name}' ({type(self.layer).__name__}): " \
            if self.layer is not None else ""
        return ConfigError(f"export to ONNX: {where}{what} has no ONNX form here")


def channels_first(rank):
    """The permutation (N, *spatial, C) → (N, C, *spatial) and its inverse."""
    to_first = [0, rank + 1, *range(1, rank + 1)]
    to_last = [0, *range(2, rank + 2), 1]
    return to_first, to_last
