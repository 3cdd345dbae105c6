"""The Keras arguments many layers share, declared once (``@arguments`` composes them
into each layer's signature, which the schema reads).

- ``KERNEL``: kernel and bias initializers, then their regularizers (Dense, Conv*).
- ``RECURRENT_INITIALIZERS``/``RECURRENT_REGULARIZERS``: the same with the recurrent
  kernel between them (SimpleRNN, LSTM, GRU); ``RNN_OPTIONS``: dropout and direction.
- ``LAYER``: what every Keras layer takes last: name, trainable, activity_regularizer.
"""

from trainer.config.registry import Args, Rate, component

INITIALIZERS = Args(kernel_initializer=(component("initializer"), "glorot_uniform"),
                    bias_initializer=(component("initializer"), "zeros"))
REGULARIZERS = Args(kernel_regularizer=(component("regularizer"), None),
                    bias_regularizer=(component("regularizer"), None))
KERNEL = INITIALIZERS + REGULARIZERS

RECURRENT_INITIALIZERS = Args(
    kernel_initializer=INITIALIZERS["kernel_initializer"],
    recurrent_initializer=(component("initializer"), "orthogonal"),
    bias_initializer=INITIALIZERS["bias_initializer"])
RECURRENT_REGULARIZERS = Args(
    kernel_regularizer=REGULARIZERS["kernel_regularizer"],
    recurrent_regularizer=(component("regularizer"), None),
    bias_regularizer=REGULARIZERS["bias_regularizer"])
RNN_OPTIONS = Args(dropout=(Rate, 0.0), recurrent_dropout=(Rate, 0.0),
                   return_sequences=(bool, False), return_state=(bool, False),
                   go_backwards=(bool, False), stateful=(bool, False), unroll=(bool, False))

LAYER = Args(name=(str | None, None), trainable=(bool, True),
             activity_regularizer=(component("regularizer"), None))
