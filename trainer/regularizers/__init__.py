"""Weight regularizers: a penalty added to the loss, and its gradient."""

from trainer.registries import regularizers


def get(spec):
    return regularizers.get(spec)
