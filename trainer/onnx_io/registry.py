"""Layer class → converter, activation class → converter.

A converter is ``fn(ctx, layer, xs, masks) -> outputs``: ``xs`` the ONNX names of the
layer call's inputs (one per graph input of the call), ``masks`` their Keras masks
(ONNX names of float (batch, time) tensors, or None), ``outputs`` a list of ONNX names
(one per output of the layer). A converter that gives its output a mask other than
the default (the input's mask for ``passes_mask`` layers, else none) sets
``ctx.out_mask``. Looked up by exact class: a subclass (a user layer derived from
Dense) is not assumed to compute what its parent does.
"""

LAYERS = {}
ACTIVATIONS = {}


def converts(*classes):
    """Register the decorated function as the converter of ``classes``."""
    def register(fn):
        for cls in classes:
            LAYERS[cls] = fn
        return fn
    return register


def converts_activation(*classes):
    def register(fn):
        for cls in classes:
            ACTIVATIONS[cls] = fn
        return fn
    return register


def layer_converter(layer):
    _load()
    return LAYERS.get(type(layer))


def activation(ctx, fn, x):
    """``fn`` (an activation object, or None: linear) applied to ONNX tensor ``x``."""
    _load()
    if fn is None:
        return x
    convert = ACTIVATIONS.get(type(fn))
    if convert is None:
        raise ctx.unsupported(f"activation {type(fn).__name__}")
    return convert(ctx, fn, x)


_loaded = []


def _load():
    """Import the converter modules once (each registers its layers)."""
    if _loaded:
        return
    _loaded.append(True)
    import importlib
    import pkgutil
    from pathlib import Path

    # as the component registries do (trainer.config.registry): every converter module
    # of this package, found by name, so this module imports none of them directly
    package = __name__.rpartition(".")[0]
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        importlib.import_module(f"{package}.{info.name}")
