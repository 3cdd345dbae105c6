"""Optimizers by Keras 2 name (``adam``, ``Adam``, ``{SGD: {lr: 0.1}}``)."""

from trainer.config.families import optimizers


def get(spec):
    return optimizers.get(spec)
