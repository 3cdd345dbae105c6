"""Write a functional model config the way Keras's application code calls layers.

``net.add("Conv2D", x, "block1_conv1", filters=64, kernel_size=3)`` appends
``{Conv2D: {filters: 64, kernel_size: 3, name: block1_conv1, inputs: x}}`` and returns
the name later layers refer to. A layer given no name gets Keras 2's automatic one
(``max_pooling2d``, ``max_pooling2d_1``, ...), so the config names every layer.
"""

from trainer.engine.layer import snake_case


class Net:
    def __init__(self, input_name="input_1", first_suffix=0):
        self.input_name = input_name
        #: standalone Keras 2.0 numbered automatic names from 1 (conv2d_1, conv2d_2, ...):
        #: families whose released weight files it wrote use 1, so they load by name
        self.first_suffix = first_suffix
        self.layers = []
        self._used = {input_name}
        self._counts = {}

    def _auto(self, kind):
        base = snake_case(kind)
        while True:
            n = self._counts.get(base, self.first_suffix)
            self._counts[base] = n + 1
            name = base if n == 0 else f"{base}_{n}"
            if name not in self._used:
                return name

    def add(self, kind, inputs, name=None, **args):
        """One layer called on ``inputs`` (a name or a list of names); its name."""
        name = name or self._auto(kind)
        if name in self._used:
            raise AssertionError(f"layer name {name!r} used twice")
        self._used.add(name)
        spec = {k: v for k, v in args.items() if v is not None}
        spec["name"] = name
        spec["inputs"] = inputs
        self.layers.append({kind: spec})
        return name

    # Keras's building blocks, named as Keras names their layers
    def conv(self, x, name, filters, kernel_size, strides=1, padding="valid", use_bias=True,
             activation=None, **more):
        return self.add("Conv2D", x, name, filters=filters, kernel_size=kernel_size,
                        strides=_one(strides), padding=padding.lower(),
                        use_bias=None if use_bias else False,
                        activation=activation, **more)

    def bn(self, x, name=None, epsilon=None, momentum=None):
        return self.add("BatchNormalization", x, name, axis=3, epsilon=epsilon,
                        momentum=momentum)

    def act(self, x, activation, name=None):
        return self.add("Activation", x, name, activation=activation)


def _one(value):
    """Keras's (2, 2) as 2 where the two agree (configs read the same either way)."""
    if isinstance(value, (list, tuple)) and len(set(value)) == 1:
        return value[0]
    return list(value) if isinstance(value, tuple) else value
