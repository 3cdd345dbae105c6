"""Fast array kernels of the engine (im2col convolution, pooling), each beside a
plain reference version (``*_reference.py``) that the tests compare it with."""

import os


def env_choice(var, choices):
    """The value of the environment variable ``var``, one of ``choices`` (the first is
    the default); another value is a ConfigError naming the variable and the choices
    (the kernels' switches: TRAINER_CONV_ALGO, TRAINER_CONV_DIRECT)."""
    value = os.environ.get(var, choices[0]).strip().lower() or choices[0]
    if value not in choices:
        from trainer.errors import ConfigError

        raise ConfigError(f"{var}: expected one of {', '.join(choices)}, got {value!r}")
    return value
