"""Losses by Keras 2 name. Each gives per-sample values and their gradient."""

from trainer.config.families import losses


def get(spec):
    return losses.get(spec)
