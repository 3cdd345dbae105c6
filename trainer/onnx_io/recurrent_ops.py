"""SimpleRNN, LSTM and GRU without a mask as ONNX's own RNN, LSTM and GRU ops (one
fused kernel in ONNX Runtime), where ONNX can hold the layer exactly:

- gate order: Keras's LSTM blocks i, f, c, o become ONNX's i, o, f, c; GRU's z, r, h
  are ONNX's order already;
- GRU ``reset_after`` is ONNX's ``linear_before_reset=1`` with the recurrent bias as
  ``Rb``; without it ``linear_before_reset=0`` and no recurrent bias;
- activations ONNX's recurrent ops take by name (Keras 2's hard_sigmoid is
  HardSigmoid(0.2, 0.5)); another activation goes through the Scan form;
- ``go_backwards`` is ``direction=reverse`` with the output sequence flipped back to
  the order the layer gives it (last step first).

A mask goes through the Scan form (recurrent.py): ONNX's ``sequence_lens`` covers only
trailing padding and zeroes the padded steps' outputs, where Keras repeats the last
output."""

import numpy as np

from trainer.activations import basic, more
from trainer.layers.recurrent import GRU, LSTM, SimpleRNN

#: activation class → (ONNX name, alphas, betas) as the recurrent ops take them
NAMES = {basic.Sigmoid: ("Sigmoid", [], []), basic.Tanh: ("Tanh", [], []),
         basic.Relu: ("Relu", [], []), more.HardSigmoid: ("HardSigmoid", [0.2], [0.5]),
         more.Softsign: ("Softsign", [], []), more.Softplus: ("Softplus", [], []),
         basic.Linear: ("Affine", [1.0], [0.0])}


def _activation(fn):
    if type(fn) is more.Elu:
        return "Elu", [float(fn.alpha)], []
    return NAMES.get(type(fn))


#: layer class → (ONNX op, Keras gate blocks in ONNX's order, activations used)
OPS = {SimpleRNN: ("RNN", [0], lambda l: [l.activation]),
       LSTM: ("LSTM", [0, 3, 1, 2], lambda l: [l.recurrent_activation, l.activation,
                                              l.activation]),
       GRU: ("GRU", [0, 1, 2], lambda l: [l.recurrent_activation, l.activation])}


def _gates(w, order, u):
    """(.., G·u) in Keras's gate order → (G·u, ..) in ONNX's, with a direction axis."""
    blocks = [w[..., k * u:(k + 1) * u] for k in order]
    return np.concatenate(blocks, axis=-1).T[None]


def native(ctx, layer, x, mask, initial=()):
    """[output, *final states] through ONNX's op, or None where only Scan fits."""
    op_type, order, acts = OPS[type(layer)]
    names = [_activation(fn) for fn in acts(layer)]
    if mask is not None or any(n is None for n in names):
        return None
    u = layer.units
    W = _gates(layer.params["kernel"], order, u)
    R = _gates(layer.params["recurrent_kernel"], order, u)
    G = len(order)
    bias = np.zeros((1, 2 * G * u), np.float32)
    if layer.use_bias:
        b = layer.params["bias"]
        if isinstance(layer, GRU) and layer.reset_after:
            bias[0] = np.concatenate([_gates(b[0], order, u)[0], _gates(b[1], order, u)[0]])
        else:
            b = b[0] if b.ndim == 2 else b
            bias[0, :G * u] = _gates(b, order, u)[0]
    extra = {"linear_before_reset": int(layer.reset_after)} if isinstance(layer, GRU) else {}
    states = [ctx.op("Unsqueeze", [s, ctx.ints([0], "axes")]) for s in initial]
    inputs = [ctx.transpose(x, [1, 0, 2]), ctx.const(W, "kernel"),
              ctx.const(R, "recurrent_kernel"), ctx.const(bias, "bias"), ""]
    inputs += states[:1] or [""]
    if isinstance(layer, LSTM):
        inputs += [states[1] if len(states) > 1 else ""]
    while inputs and inputs[-1] == "":
        inputs.pop()
    n_out = 3 if isinstance(layer, LSTM) else 2
    outs = ctx.op(op_type, inputs, n_out, hidden_size=u,
                  direction="reverse" if layer.go_backwards else "forward",
                  activations=[n[0] for n in names],
                  activation_alpha=[a for n in names for a in n[1]] or None,
                  activation_beta=[b for n in names for b in n[2]] or None, **extra)
    finals = [ctx.op("Squeeze", [s, ctx.ints([0], "axes")]) for s in outs[1:]]
    if layer.return_sequences:
        seq = ctx.transpose(ctx.op("Squeeze", [outs[0], ctx.ints([1], "axes")]), [1, 0, 2])
        if layer.go_backwards:  # the layer gives the steps in the order it read them
            seq = ctx.op("Slice", [seq, ctx.ints([-1], "starts"),
                                   ctx.ints([-(2 ** 62)], "ends"), ctx.ints([1], "axes"),
                                   ctx.ints([-1], "steps")])
        y = seq
    else:
        y = finals[0]
    return [y] + (finals if layer.return_state else [])
