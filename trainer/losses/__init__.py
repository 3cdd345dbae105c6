"""Losses by Keras 2 name. Each gives per-sample values and their gradient."""

from trainer.registries import losses


def get(spec):
    return losses.get(spec)
