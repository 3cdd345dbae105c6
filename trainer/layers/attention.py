"""MultiHeadAttention, Keras 2 semantics and weight layout.

Called on one sequence it attends to itself; called on ``[query, value]`` or
``[query, value, key]`` (key defaults to value) it is Keras's cross-attention::

    Q = query·Wq + bq   (per head: key_dim),   K = key·Wk + bk,   V = value·Wv + bv
    scores = (Q / sqrt(key_dim)) · Kᵀ          one (T, S) matrix per head
    P = softmax(scores + (1 - mask)·(-1e9))    over the S positions
    out = concat_heads(dropout(P) · V) · Wo + bo

Weights as Keras's EinsumDense layers keep them (import/export in that order):
``query/kernel (d_q, heads, key_dim)``, ``query/bias (heads, key_dim)``, the same for
``key`` (value_dim for ``value``), ``attention_output/kernel (heads, value_dim, out)``
and ``attention_output/bias (out,)``.

Masks as Keras builds them: the query's mask (Embedding mask_zero, Masking) masks
rows, the value's (and key's) mask masks columns, ``use_causal_mask`` lets position t
see positions ≤ t only. Keras passes ``use_causal_mask`` when calling the layer; a
config has no call, so here it is an argument. The output carries the query's mask.
"""

import math
from typing import Literal

import numpy as np

from trainer import initializers
from trainer.activations.basic import Softmax

from trainer.distributed import shard
from trainer.engine.layer import Layer
from trainer.layers.core import check_rate, draw_dtype, kernel_settings
from trainer.config.families import layers
from trainer.config.registry import PositiveInt, Rate, arguments, component
from trainer.layers.argument_groups import KERNEL, LAYER

#: what Keras adds to masked scores before the softmax (float32)
MASKED = -1e9
SOFTMAX = Softmax()


def attention_weights(layer, scores, allowed, training):
    """softmax over the last axis of ``scores`` with disallowed entries pushed down by
    1e9 first (as Keras), and the layer's dropout mask (scaled by 1/keep) while
    training, or None: (weights, mask)."""
    dtype = scores.dtype
    if allowed is not None:
        scores = scores + (~allowed).astype(dtype) * dtype.type(MASKED)
    P = SOFTMAX.forward(scores)
    if not (training and layer.dropout > 0):
        return P, None
    rate = 1.0 - layer.dropout
    keep = (shard.draw(lambda s: layer.rng.random(s, dtype=draw_dtype(dtype)), P.shape)
            < rate).astype(dtype)
    keep *= dtype.type(1.0 / rate)
    return P, keep


def scores_gradient(P, keep, dA):
    """Gradient wrt the scores from the gradient wrt the (dropped-out) weights."""
    return SOFTMAX.backward(None, P, dA * keep if keep is not None else dA)


def allowed_positions(rows, columns, causal, t, s):
    """(B or 1, T, S) booleans of the (query, key) pairs attention may use, or None:
    the query's mask on rows, the value's/key's masks on columns, and with ``causal``
    position t sees positions ≤ t only (Keras's _compute_attention_mask)."""
    allowed = None if rows is None else rows[:, :, None]
    for m in columns:
        if m is not None:
            allowed = m[:, None, :] if allowed is None else allowed & m[:, None, :]
    if causal:
        tri = np.tril(np.ones((t, s), bool))[None]
        allowed = tri if allowed is None else allowed & tri
    return allowed


def check_inputs(layer, shapes):
    """[query, value, key] shapes (key defaults to value), each (steps, features) with
    known features, value and key with the same steps; a ConfigError naming the input
    otherwise."""
    if len(shapes) not in (2, 3):
        raise layer.error(f"is called on [query, value] or [query, value, key]"
                          f"{' (or one sequence: self-attention)' if layer.extra_inputs else ''}"
                          f"; got {len(shapes)} inputs")
    for what, shape in zip(("query", "value", "key"), shapes):
        if len(shape) != 2 or shape[-1] is None:
            raise layer.error(f"expects each input of rank 3 (batch, steps, features) "
                              f"with known features; the {what} has shape "
                              f"(None, {', '.join(str(d) for d in shape)})")
    q, v = shapes[0], shapes[1]
    k = shapes[2] if len(shapes) > 2 else v
    if v[0] is not None and k[0] is not None and v[0] != k[0]:
        raise layer.error(f"value and key need the same number of steps, got {v[0]} and "
                          f"{k[0]}")
    return q, v, k


@layers.register("MultiHeadAttention")
class MultiHeadAttention(Layer):
    """Multi-head scaled dot-product attention (see the module doc).

    Args:
        num_heads: number of heads. key_dim: size of each head for query and key.
        value_dim: size of each head for value (default key_dim).
        dropout: rate of dropout on the attention probabilities (training only).
        use_bias: biases on the four projections (default true).
        output_shape: size of the output's last axis (default: the query's).
        use_causal_mask: position t attends to positions ≤ t only (decoders).
        kernel_initializer (glorot_uniform), bias_initializer (zeros),
        kernel_regularizer, bias_regularizer, activity_regularizer.
    """

    takes_mask = True
    extra_inputs = True  # x (self-attention), or [query, value] / [query, value, key]
    takes_input_masks = True
    #: ``output_shape`` is the layer's built shape; the argument lives here
    config_attributes = {"output_shape": "output_shape_arg"}
    #: Keras passes these when calling the layer (export: the call's kwargs)
    keras_call_arguments = ("use_causal_mask",)
    #: tf.keras records value (and key) as keywords of the query's call
    keras_keyword_inputs = ("value", "key")

    @arguments(KERNEL, LAYER)
    def __init__(self, num_heads: PositiveInt, key_dim: PositiveInt,
                 value_dim: PositiveInt | None = None, dropout: Rate = 0.0,
                 use_bias: bool = True, output_shape: PositiveInt | None = None,
                 use_causal_mask: bool = False, **args):
        super().__init__(**LAYER.take(args))
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = value_dim
        self.dropout = check_rate(self, dropout)
        self.use_bias = use_bias
        self.output_shape_arg = output_shape
        self.use_causal_mask = use_causal_mask
        kernel_settings(self, **KERNEL.take(args))
        self.rng = np.random.default_rng(0)  # replaced by the model's noise stream

    def build(self, input_shape, rng):
        shapes = list(input_shape) if isinstance(input_shape, list) else [input_shape] * 2
        q, v, k = check_inputs(self, shapes)
        h, kd = self.num_heads, self.key_dim
        vd = self.value_dim or kd
        out = self.output_shape_arg or q[-1]
        for prefix, dim, size in (("query", q[-1], kd), ("key", k[-1], kd),
                                  ("value", v[-1], vd)):
            self.add_weight(f"{prefix}/kernel", (dim, h, size), self.kernel_initializer, rng,
                            self.kernel_regularizer)
            if self.use_bias:
                self.add_weight(f"{prefix}/bias", (h, size), self.bias_initializer, rng,
                                self.bias_regularizer)
        self.add_weight("attention_output/kernel", (h, vd, out), self.kernel_initializer,
                        rng, self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("attention_output/bias", (out,), self.bias_initializer, rng,
                            self.bias_regularizer)
        return (q[0], out)

    def compute_mask(self, x, mask):
        return mask[0] if isinstance(mask, list) else mask

    def forward(self, x, training, mask=None):
        listed = isinstance(x, list)
        q, v = (x[0], x[1]) if listed else (x, x)
        k = x[2] if listed and len(x) > 2 else v
        if listed:
            masks = list(mask) if mask is not None else [None] * len(x)
            masks += [masks[1]] * (3 - len(masks))  # the key takes the value's mask
        else:
            masks = [mask] * 3
        p = self.params
        h, kd = self.num_heads, self.key_dim
        vd = self.value_dim or kd
        n, t, s = len(q), q.shape[1], v.shape[1]
        dtype = p["query/kernel"].dtype

        def project(a, prefix, size):
            w = p[f"{prefix}/kernel"]
            y = a.reshape(-1, a.shape[-1]) @ w.reshape(w.shape[0], -1)
            if self.use_bias:
                y += p[f"{prefix}/bias"].reshape(-1)
            return y.reshape(len(a), a.shape[1], h, size).transpose(0, 2, 1, 3)

        scale = dtype.type(1.0 / math.sqrt(kd))
        Q = project(q, "query", kd) * scale      # (B, h, T, kd)
        K = project(k, "key", kd)                 # (B, h, S, kd)
        V = project(v, "value", vd)               # (B, h, S, vd)
        scores = Q @ K.transpose(0, 1, 3, 2)      # (B, h, T, S)
        allowed = allowed_positions(masks[0], masks[1:], self.use_causal_mask, t, s)
        P, keep = attention_weights(self, scores, None if allowed is None else allowed[:, None],
                                    training)
        A = P * keep if keep is not None else P
        O = (A @ V).transpose(0, 2, 1, 3).reshape(n * t, h * vd)   # (B·T, h·vd)
        wo = p["attention_output/kernel"]
        y = O @ wo.reshape(h * vd, -1)
        if self.use_bias:
            y += p["attention_output/bias"]
        y = y.reshape(n, t, y.shape[-1])

        def backward(dy):
            g = self.grads
            dy2 = dy.reshape(n * t, dy.shape[-1])
            g["attention_output/kernel"] += (O.T @ dy2).reshape(wo.shape)
            if self.use_bias:
                g["attention_output/bias"] += dy2.sum(axis=0)
            dO = (dy2 @ wo.reshape(h * vd, -1).T).reshape(n, t, h, vd).transpose(0, 2, 1, 3)
            dA = dO @ V.transpose(0, 1, 3, 2)                      # (B, h, T, S)
            dV = A.transpose(0, 1, 3, 2) @ dO                      # (B, h, S, vd)
            dscores = scores_gradient(P, keep, dA)
            dQ = (dscores @ K) * scale                             # wrt the unscaled Q
            dK = dscores.transpose(0, 1, 3, 2) @ Q                 # Q is already scaled

            def unproject(a, d, prefix):
                d2 = d.transpose(0, 2, 1, 3).reshape(len(a) * a.shape[1], d.shape[1] * d.shape[3])
                w = p[f"{prefix}/kernel"]
                a2 = a.reshape(-1, a.shape[-1])
                g[f"{prefix}/kernel"] += (a2.T @ d2).reshape(w.shape)
                if self.use_bias:
                    g[f"{prefix}/bias"] += d2.sum(axis=0).reshape(w.shape[1:])
                return (d2 @ w.reshape(w.shape[0], -1).T).reshape(a.shape)

            dq = unproject(q, dQ, "query")
            dk = unproject(k, dK, "key")
            dv = unproject(v, dV, "value")
            if not listed:
                return dq + dk + dv
            if len(x) == 2:
                return [dq, dv + dk]
            return [dq, dv, dk]

        return y, backward


class _DenseAttention(Layer):
    """Keras's BaseDenseAttention: on ``[query, value]`` or ``[query, value, key]``
    (key defaults to value), ``softmax(scores(query, key)) · value``. The value's
    mask (and ``use_causal_mask``) push masked scores down by 1e9 before the softmax;
    the query's mask zeroes the output rows of padded queries and is the output's
    mask. Subclasses give the scores and their gradient."""

    multi_input = True
    takes_mask = True
    takes_input_masks = True
    keras_call_arguments = ("use_causal_mask",)  # Keras passes it when calling
    #: Keras 2's ``causal`` (deprecated in tf.keras 2.10, gone in Keras 3) is read, and
    #: exported as the call's use_causal_mask
    keras_legacy_arguments = ("causal",)

    def __init__(self, use_scale, dropout, use_causal_mask, causal, name, trainable):
        super().__init__(name=name, trainable=trainable)
        self.use_scale = use_scale
        self.dropout = check_rate(self, dropout)
        self.use_causal_mask = bool(use_causal_mask or causal)
        self.causal = causal
        self.rng = np.random.default_rng(0)  # replaced by the model's noise stream

    def build(self, input_shape, rng):
        q, v, k = check_inputs(self, input_shape)
        if q[-1] != k[-1]:
            raise self.error(f"query and key need the same feature size, got {q[-1]} and "
                             f"{k[-1]}")
        self.build_scale(q[-1], rng)
        return (q[0], v[-1])

    def compute_mask(self, x, mask):
        return mask[0] if mask else None

    def forward(self, x, training, mask=None):
        q, v = x[0], x[1]
        k = x[2] if len(x) > 2 else v
        qm, vm = (mask[0], mask[1]) if mask else (None, None)
        dtype = q.dtype
        scores, scores_back = self.scores(q, k)
        # the query's mask zeroes output rows below instead of masking scores
        allowed = allowed_positions(None, [vm], self.use_causal_mask, q.shape[1], k.shape[1])
        P, keep = attention_weights(self, scores, allowed, training)
        A = P * keep if keep is not None else P
        y = A @ v
        qmask = None if qm is None else qm[:, :, None].astype(dtype)
        if qmask is not None:
            y *= qmask

        def backward(dy):
            if qmask is not None:
                dy = dy * qmask
            dA = dy @ v.transpose(0, 2, 1)
            dv = A.transpose(0, 2, 1) @ dy
            dq, dk = scores_back(scores_gradient(P, keep, dA))
            return [dq, dv + dk] if len(x) == 2 else [dq, dv, dk]

        return y, backward


@layers.register("Attention")
class Attention(_DenseAttention):
    """Dot-product (Luong) attention, Keras's ``Attention``: scores = query · keyᵀ,
    times a learned scalar ``scale`` (initially 1) with ``use_scale``.

    Args: use_scale (false), score_mode ("dot"), dropout (0.0, on the attention
    weights while training), use_causal_mask (false; Keras 2's ``causal`` is
    accepted too). Called on ``inputs: [query, value]`` or ``[query, value, key]``.
    """

    def __init__(self, use_scale: bool = False, score_mode: Literal["dot"] = "dot",
                 dropout: Rate = 0.0, use_causal_mask: bool = False, causal: bool = False,
                 name: str | None = None, trainable: bool = True):
        super().__init__(use_scale, dropout, use_causal_mask, causal, name, trainable)
        self.score_mode = score_mode

    def build_scale(self, dim, rng):
        if self.use_scale:
            self.add_weight("scale", (), initializers.get("ones"), rng)

    def scores(self, q, k):
        raw = q @ k.transpose(0, 2, 1)
        scale = self.params.get("scale")
        out = raw * scale if scale is not None else raw

        def back(ds):
            if scale is not None:
                self.grads["scale"] += (ds * raw).sum()
                ds = ds * scale
            return ds @ k, ds.transpose(0, 2, 1) @ q

        return out, back


@layers.register("AdditiveAttention")
class AdditiveAttention(_DenseAttention):
    """Additive (Bahdanau) attention, Keras's ``AdditiveAttention``:
    scores[i, j] = Σ_d scale_d · tanh(query[i, d] + key[j, d]), with a learned
    ``scale`` (glorot_uniform, one per feature) when ``use_scale`` (the default).

    Args: use_scale (true), dropout (0.0), use_causal_mask (false; ``causal`` too).
    """

    def __init__(self, use_scale: bool = True, dropout: Rate = 0.0,
                 use_causal_mask: bool = False, causal: bool = False,
                 name: str | None = None, trainable: bool = True):
        super().__init__(use_scale, dropout, use_causal_mask, causal, name, trainable)

    def build_scale(self, dim, rng):
        if self.use_scale:
            self.add_weight("scale", (dim,), initializers.get("glorot_uniform"), rng)

    def scores(self, q, k):
        H = np.tanh(q[:, :, None, :] + k[:, None, :, :])     # (B, Tq, Tv, d)
        scale = self.params.get("scale")
        out = (H * scale).sum(axis=-1) if scale is not None else H.sum(axis=-1)

        def back(ds):
            if scale is not None:
                self.grads["scale"] += np.einsum("bij,bijd->d", ds, H)
                dH = ds[..., None] * scale
            else:
                dH = np.broadcast_to(ds[..., None], H.shape)
            dZ = dH * (1 - H * H)
            return dZ.sum(axis=2), dZ.sum(axis=1)

        return out, back
