"""Weight initializers by name, as Keras 2 computes them."""

from trainer.config.families import initializers


def get(spec):
    return initializers.get(spec)


def fans(shape):
    """Keras fan-in and fan-out: the last two axes are (in, out), the rest the receptive field."""
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = 1
    for d in shape[:-2]:
        receptive *= d
    return shape[-2] * receptive, shape[-1] * receptive
