"""MultiHeadAttention, Attention (dot product), AdditiveAttention, as the layers
compute them: masked scores pushed down by 1e9 before the softmax (the query's mask
on rows and the value's/key's on columns for MultiHeadAttention; the value's on
columns and the query's zeroing output rows for the dense attentions), and
``use_causal_mask`` as a lower-triangular mask (Trilu, any length)."""

import math

from trainer.layers.attention import MASKED, AdditiveAttention, Attention, MultiHeadAttention
from trainer.onnx_io.registry import converts


def _allowed(ctx, scores, rows, columns, causal):
    """Float (N or 1, [1,] T, S) of the allowed (query, key) pairs for ``scores`` (…, T,
    S), or None."""
    allowed = None if rows is None else ctx.op("Unsqueeze", [rows, ctx.ints([2], "axes")])
    for m in columns:
        if m is not None:
            col = ctx.op("Unsqueeze", [m, ctx.ints([1], "axes")])
            allowed = col if allowed is None else ctx.op("Mul", [allowed, col])
    if causal:
        shape = ctx.op("Shape", [scores], start=-2)
        ones = ctx.op("ConstantOfShape", [shape], value=ctx.helper.make_tensor(
            "one", 1, [1], [1.0]))
        tri = ctx.op("Trilu", [ones], upper=0)
        allowed = tri if allowed is None else ctx.op("Mul", [allowed, tri])
    return allowed


def _softmax(ctx, scores, allowed):
    if allowed is not None:
        penalty = ctx.op("Mul", [ctx.op("Sub", [ctx.scalar(1.0), allowed]),
                                 ctx.scalar(MASKED)])
        scores = ctx.op("Add", [scores, penalty])
    return ctx.op("Softmax", [scores], axis=-1)


def _project(ctx, layer, a, prefix, size):
    """a (N, S, d) @ kernel (d, heads, size) + bias → (N, heads, S, size)."""
    p, h = layer.params, layer.num_heads
    w = p[f"{prefix}/kernel"]
    b = p[f"{prefix}/bias"].reshape(-1) if layer.use_bias else None
    y = ctx.matmul_add(a, w.reshape(w.shape[0], -1), b, f"{prefix}_kernel")
    return ctx.transpose(ctx.reshape(y, [0, 0, h, size]), [0, 2, 1, 3])


@converts(MultiHeadAttention)
def multi_head(ctx, layer, xs, masks):
    q, v = (xs[0], xs[1]) if len(xs) > 1 else (xs[0], xs[0])
    k = xs[2] if len(xs) > 2 else v
    if len(xs) > 1:
        masks = list(masks) + [masks[1]] * (3 - len(masks))
    else:
        masks = masks * 3
    h, kd = layer.num_heads, layer.key_dim
    vd = layer.value_dim or kd
    Q = ctx.op("Mul", [_project(ctx, layer, q, "query", kd), ctx.scalar(1.0 / math.sqrt(kd))])
    K = _project(ctx, layer, k, "key", kd)
    V = _project(ctx, layer, v, "value", vd)
    scores = ctx.op("MatMul", [Q, ctx.transpose(K, [0, 1, 3, 2])])
    allowed = _allowed(ctx, scores, masks[0], masks[1:], layer.use_causal_mask)
    if allowed is not None and (masks[0] is not None or any(masks[1:])):
        allowed = ctx.op("Unsqueeze", [allowed, ctx.ints([1], "axes")])  # over heads
    P = _softmax(ctx, scores, allowed)
    O = ctx.reshape(ctx.transpose(ctx.op("MatMul", [P, V]), [0, 2, 1, 3]), [0, 0, h * vd])
    wo = layer.params["attention_output/kernel"]
    bo = layer.params["attention_output/bias"] if layer.use_bias else None
    ctx.out_mask = masks[0]
    return [ctx.matmul_add(O, wo.reshape(h * vd, -1), bo, "attention_output_kernel")]


def _dot_scores(ctx, layer, q, k):
    raw = ctx.op("MatMul", [q, ctx.transpose(k, [0, 2, 1])])
    scale = layer.params.get("scale")
    return raw if scale is None else ctx.op("Mul", [raw, ctx.const(scale, "scale")])


def _additive_scores(ctx, layer, q, k):
    H = ctx.op("Tanh", [ctx.op("Add", [ctx.op("Unsqueeze", [q, ctx.ints([2], "axes")]),
                                       ctx.op("Unsqueeze", [k, ctx.ints([1], "axes")])])])
    scale = layer.params.get("scale")
    if scale is not None:
        H = ctx.op("Mul", [H, ctx.const(scale, "scale")])
    return ctx.op("ReduceSum", [H, ctx.ints([-1], "axes")], keepdims=0)


SCORES = {Attention: _dot_scores, AdditiveAttention: _additive_scores}


@converts(Attention, AdditiveAttention)
def dense_attention(ctx, layer, xs, masks):
    q, v = xs[0], xs[1]
    k = xs[2] if len(xs) > 2 else v
    qm, vm = masks[0], masks[1]
    scores = SCORES[type(layer)](ctx, layer, q, k)
    P = _softmax(ctx, scores, _allowed(ctx, scores, None, [vm], layer.use_causal_mask))
    y = ctx.op("MatMul", [P, v])
    if qm is not None:
        y = ctx.op("Mul", [y, ctx.op("Unsqueeze", [qm, ctx.ints([2], "axes")])])
    ctx.out_mask = qm
    return [y]
