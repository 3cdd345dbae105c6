"""Activation functions by name. Each computes ``y = f(x)`` and ``dx`` from ``x, y, dy``."""

from trainer.config.families import activations


def get(spec):
    """An activation from a name, ``{name: args}``, None (linear) or an instance."""
    return activations.get("linear" if spec is None else spec)
