"""SimpleRNN, LSTM, GRU (and Bidirectional over them) as an ONNX Scan over time.

The input projection x @ kernel + bias is one MatMul over every step; the Scan body is
one step of the layer's own formulas (recurrent_activation / activation through the
activation converters, so hard_sigmoid stays Keras 2's clip(0.2·x + 0.5, 0, 1)),
Keras's gate order (LSTM i, f, c, o; GRU z, r, h) and GRU's ``reset_after``. A mask
is a second scanned input: a masked step keeps every state and outputs the previous
output (h = h_prev + m·(h_new − h_prev)), for any mask (not only trailing padding, the
one case ONNX's LSTM/GRU ``sequence_lens`` covers), so nothing needs unrolling.
``go_backwards`` scans the input from its end; the outputs come in that order, as the
layer gives them."""

from onnx import TensorProto

from trainer.layers.recurrent import GRU, LSTM, SimpleRNN
from trainer.layers.wrappers import Bidirectional
from trainer.onnx_io.recurrent_ops import native
from trainer.onnx_io.registry import activation, converts


def _carry(ctx, old, new, m):
    if m is None:
        return new
    return ctx.op("Add", [old, ctx.op("Mul", [m, ctx.op("Sub", [new, old])])])


def _slice(ctx, z, k, u, n=1):
    """Gates k .. k+n−1 (each ``u`` wide) of the last axis of ``z``."""
    return ctx.op("Slice", [z, ctx.ints([k * u], "starts"), ctx.ints([(k + n) * u], "ends"),
                            ctx.ints([-1], "axes")])


def _simple_step(ctx, layer, xp, states, m, U):
    (h,) = states
    z = ctx.op("Add", [xp, ctx.op("MatMul", [h, U])])
    return [_carry(ctx, h, activation(ctx, layer.activation, z), m)]


def _lstm_step(ctx, layer, xp, states, m, U):
    h, c = states
    u = layer.units
    z = ctx.op("Add", [xp, ctx.op("MatMul", [h, U])])
    ract = layer.recurrent_activation
    i = activation(ctx, ract, _slice(ctx, z, 0, u))
    f = activation(ctx, ract, _slice(ctx, z, 1, u))
    g = activation(ctx, layer.activation, _slice(ctx, z, 2, u))
    o = activation(ctx, ract, _slice(ctx, z, 3, u))
    c_new = ctx.op("Add", [ctx.op("Mul", [f, c]), ctx.op("Mul", [i, g])])
    h_new = ctx.op("Mul", [o, activation(ctx, layer.activation, c_new)])
    return [_carry(ctx, h, h_new, m), _carry(ctx, c, c_new, m)]


def _gru_step(ctx, layer, xp, states, m, U):
    (h,) = states
    u = layer.units
    ract = layer.recurrent_activation
    if layer.reset_after:
        inner = ctx.op("MatMul", [h, U])
        if layer.use_bias:
            inner = ctx.op("Add", [inner, ctx.const(layer.params["bias"][1], "recurrent_bias")])
        zr = activation(ctx, ract, ctx.op("Add", [_slice(ctx, xp, 0, u, 2),
                                                  _slice(ctx, inner, 0, u, 2)]))
        r = _slice(ctx, zr, 1, u)
        pre = ctx.op("Add", [_slice(ctx, xp, 2, u),
                             ctx.op("Mul", [r, _slice(ctx, inner, 2, u)])])
    else:
        Uzr = ctx.const(layer.params["recurrent_kernel"][:, :2 * u], "recurrent_kernel_zr")
        Uh = ctx.const(layer.params["recurrent_kernel"][:, 2 * u:], "recurrent_kernel_h")
        zr = activation(ctx, ract, ctx.op("Add", [_slice(ctx, xp, 0, u, 2),
                                                  ctx.op("MatMul", [h, Uzr])]))
        r = _slice(ctx, zr, 1, u)
        pre = ctx.op("Add", [_slice(ctx, xp, 2, u),
                             ctx.op("MatMul", [ctx.op("Mul", [r, h]), Uh])])
    hh = activation(ctx, layer.activation, pre)
    z = _slice(ctx, zr, 0, u)
    h_new = ctx.op("Add", [hh, ctx.op("Mul", [z, ctx.op("Sub", [h, hh])])])
    return [_carry(ctx, h, h_new, m)]


STEPS = {SimpleRNN: (_simple_step, 1), LSTM: (_lstm_step, 2), GRU: (_gru_step, 1)}


def _input_bias(layer):
    if not layer.use_bias:
        return None
    b = layer.params["bias"]
    return b[0] if isinstance(layer, GRU) and layer.reset_after else b


def run_rnn(ctx, layer, x, mask, initial=()):
    """[output, *final states] of recurrent ``layer`` on ONNX tensor ``x`` (N, T, D):
    ONNX's own op where it fits (recurrent_ops.py), else a Scan."""
    fused = native(ctx, layer, x, mask, initial)
    if fused is not None:
        return fused
    helper = ctx.helper
    step, n_states = STEPS[type(layer)]
    u = layer.units
    xp = ctx.matmul_add(x, layer.params["kernel"], _input_bias(layer))
    if initial:
        states = list(initial)
    else:
        batch = ctx.op("Slice", [ctx.op("Shape", [x]), ctx.ints([0], "starts"),
                                 ctx.ints([1], "ends")])
        shape = ctx.op("Concat", [batch, ctx.ints([u], "units")], axis=0)
        zeros = ctx.op("ConstantOfShape", [shape], value=helper.make_tensor(
            "zero", TensorProto.FLOAT, [1], [0.0]))
        states = [zeros] * n_states
    body = ctx.child()
    U = None if isinstance(layer, GRU) and not layer.reset_after else \
        ctx.const(layer.params["recurrent_kernel"], "recurrent_kernel")
    s_in = [body.fresh(f"state{k}_in") for k in range(n_states)]
    xp_t = body.fresh("xp_t")
    m_t = body.fresh("mask_t") if mask is not None else None
    news = step(body, layer, xp_t, s_in, m_t, U)
    s_out = [body.op("Identity", [v]) for v in news]
    seq_out = body.op("Identity", [news[0]])
    G = layer.params["kernel"].shape[1]
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info(n, f32, ["N", u]) for n in s_in]
    inputs.append(helper.make_tensor_value_info(xp_t, f32, ["N", G]))
    scanned = [xp]
    if mask is not None:
        inputs.append(helper.make_tensor_value_info(m_t, f32, ["N", 1]))
        scanned.append(ctx.op("Unsqueeze", [mask, ctx.ints([2], "axes")]))
    outputs = [helper.make_tensor_value_info(n, f32, ["N", u]) for n in s_out + [seq_out]]
    graph = helper.make_graph(body.nodes, f"{layer.name}_step", inputs, outputs)
    direction = 1 if layer.go_backwards else 0
    results = ctx.op("Scan", states + scanned, n_states + 1, body=graph,
                     num_scan_inputs=len(scanned), scan_input_axes=[1] * len(scanned),
                     scan_input_directions=[direction] * len(scanned), scan_output_axes=[1])
    finals, seq = results[:n_states], results[n_states]
    y = seq if layer.return_sequences else finals[0]
    return [y] + (finals if layer.return_state else [])


@converts(SimpleRNN, LSTM, GRU)
def recurrent(ctx, layer, xs, masks):
    ctx.out_mask = masks[0] if layer.return_sequences else None
    return run_rnn(ctx, layer, xs[0], masks[0], xs[1:])


@converts(Bidirectional)
def bidirectional(ctx, layer, xs, masks):
    """Both directions; the backward sequence flipped back to the input's time order."""
    ctx.out_mask = masks[0] if layer.layer.return_sequences else None
    if type(layer.forward_layer) not in STEPS or type(layer.backward_) not in STEPS:
        raise ctx.unsupported(f"a Bidirectional {type(layer.layer).__name__}")
    yf = run_rnn(ctx, layer.forward_layer, xs[0], masks[0])[0]
    yb = run_rnn(ctx, layer.backward_, xs[0], masks[0])[0]
    if layer.layer.return_sequences:
        yb = ctx.op("Slice", [yb, ctx.ints([-1], "starts"), ctx.ints([-(2 ** 62)], "ends"),
                              ctx.ints([1], "axes"), ctx.ints([-1], "steps")])
    mode = layer.merge_mode
    if mode == "concat":
        return [ctx.op("Concat", [yf, yb], axis=-1)]
    if mode == "ave":
        return [ctx.op("Mul", [ctx.op("Add", [yf, yb]), ctx.scalar(0.5)])]
    return [ctx.op({"sum": "Add", "mul": "Mul"}[mode], [yf, yb])]
