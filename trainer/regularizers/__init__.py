"""Weight regularizers: a penalty added to the loss, and its gradient."""

from trainer.config.families import regularizers


def get(spec):
    return regularizers.get(spec)
