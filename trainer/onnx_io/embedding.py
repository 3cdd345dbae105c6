"""Embedding: Gather of the table's rows by token id; with ``mask_zero`` the mask
(ids ≠ 0) goes on to the layers after it as a float (batch, time) tensor."""

from trainer.layers.embedding import Embedding
from trainer.onnx_io.registry import converts


@converts(Embedding)
def embedding(ctx, layer, xs, masks):
    ids = ctx.op("Cast", xs, to=7)  # int64 (a no-op for int64 inputs)
    if layer.mask_zero:
        zero = ctx.const(0, "zero", "int64")
        ctx.out_mask = ctx.op("Cast", [ctx.op("Not", [ctx.op("Equal", [ids, zero])])], to=1)
    return [ctx.op("Gather", [ctx.const(layer.params["embeddings"], "embeddings"), ids],
                   axis=0)]
