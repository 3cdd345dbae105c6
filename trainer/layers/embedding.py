"""Embedding: integer token ids → dense vectors (a table lookup)."""

import numpy as np

from trainer import initializers, regularizers
from trainer.engine.layer import Layer
from trainer.errors import DataError
from trainer.config.families import layers
from trainer.config.registry import PositiveInt, component


@layers.register("Embedding")
class Embedding(Layer):
    """Looks up row ``x`` of ``embeddings (input_dim, output_dim)`` for every token id.

    Args:
        input_dim: vocabulary size; ids must lie in ``[0, input_dim)``.
        output_dim: size of each vector.
        embeddings_initializer: default ``random_uniform`` in [-0.05, 0.05] (Keras 2's
            ``'uniform'``).
        embeddings_regularizer: optional l1/l2/l1_l2 penalty on the table.
        mask_zero: id 0 is padding: the layer hands a mask (``x != 0``) to the layers
            after it, and recurrent layers skip those steps. Id 0 then means nothing.
        input_length: the sequence length; as the first layer it sets the model's input
            shape ``(input_length,)`` (like Keras). Leave it out for any length.
    Shapes: ``(batch, *s)`` integer ids → ``(batch, *s, output_dim)``. Ids are not cast
    to float on the way in (the model marks this input as integer).
    """

    int_input = True

    def __init__(self, input_dim: PositiveInt, output_dim: PositiveInt,
                 embeddings_initializer: component("initializer") = "random_uniform",
                 embeddings_regularizer: component("regularizer") = None,
                 mask_zero: bool = False, input_length: PositiveInt | None = None,
                 name: str | None = None, trainable: bool = True,
                 activity_regularizer: component("regularizer") = None):
        super().__init__(name=name, trainable=trainable,
                         activity_regularizer=activity_regularizer)
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.mask_zero = mask_zero
        self.input_length = input_length

    def build(self, input_shape, rng):
        if (self.input_length is not None and input_shape and input_shape[-1] is not None
                and input_shape[-1] != self.input_length):
            raise self.error(f"input_length is {self.input_length} but the input has "
                             f"shape {tuple(input_shape)}")
        self.add_weight("embeddings", (self.input_dim, self.output_dim),
                        self.embeddings_initializer, rng, self.embeddings_regularizer)
        return (*input_shape, self.output_dim)

    def ids(self, x):
        """Token ids as integers, checked against the vocabulary size."""
        if x.dtype.kind not in "iu":
            if x.dtype.kind != "f" or (x.size and not np.all(np.mod(x, 1) == 0)):
                raise DataError(f"layer '{self.name}' (Embedding) wants whole-number token "
                                f"ids, got {x.dtype} values that are not")
            x = x.astype(np.intp)
        if x.size and (x.min() < 0 or x.max() >= self.input_dim):
            raise DataError(f"layer '{self.name}' (Embedding): token ids must lie in "
                            f"[0, {self.input_dim}) (input_dim), got ids in "
                            f"[{x.min()}, {x.max()}]")
        return x

    def forward(self, x, training):
        ids = self.ids(np.asarray(x))
        W = self.params["embeddings"]
        y = W[ids]  # fancy indexing: one gather, a fresh array

        def backward(dy):
            scatter_rows(self.grads["embeddings"], ids.reshape(-1),
                         dy.reshape(-1, self.output_dim))
            return None  # integer ids have no gradient

        return y, backward

    def compute_mask(self, x, mask):
        if not self.mask_zero:
            return None
        return np.asarray(x) != 0


def scatter_rows(dW, ids, rows):
    """``dW[ids[n]] += rows[n]`` for every n, repeated ids summed: sort the ids once,
    add each run of equal ids with one ``reduceat``, and write each touched row once."""
    if ids.size == 0:
        return
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    dW[sorted_ids[starts]] += np.add.reduceat(rows[order], starts, axis=0)
