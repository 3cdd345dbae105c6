"""Optimizers by Keras 2 name (``adam``, ``Adam``, ``{SGD: {lr: 0.1}}``)."""

from trainer.registries import optimizers


def get(spec):
    return optimizers.get(spec)
