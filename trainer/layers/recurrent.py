"""Recurrent layers: SimpleRNN, LSTM, GRU (Keras 2 arguments, formulas and weights).

Input ``(batch, timesteps, features)``; output ``(batch, units)`` (the last output), or
``(batch, timesteps, units)`` with ``return_sequences``. Weights as Keras stores them,
so Keras weights load as they are: ``kernel (features, gates*units)``,
``recurrent_kernel (units, gates*units)``, ``bias (gates*units,)`` — gates ``i, f, c, o``
for LSTM and ``z, r, h`` for GRU; GRU with ``reset_after`` has ``bias (2, 3*units)``
(input bias, recurrent bias).

Defaults follow Keras 2: ``recurrent_activation='hard_sigmoid'`` (standalone Keras 2;
tf.keras 2 uses ``sigmoid`` — write it to match a tf.keras model), recurrent kernel
``orthogonal``; GRU ``reset_after=True`` (tf.keras 2; standalone Keras 2 had False).

Dropout draws one input mask ``(batch, features)`` and one recurrent mask ``(batch,
units)`` per batch, shared by every gate and time step, so the input projection stays
one GEMM over all steps. (Keras draws one mask per gate when recurrent_dropout is set;
the expectation is the same.) The recurrent mask multiplies ``h_{t-1}`` where it meets
``recurrent_kernel``, not in GRU's ``z * h_{t-1}`` term.

Masks (``Embedding(mask_zero=True)``): a masked step keeps every state and outputs the
previous output; with ``return_sequences`` the mask goes on to the next layer.

``return_state`` makes the layer give several outputs: ``build`` returns ``[output
shape, (units,), ...]`` and ``forward`` ``[output, h]`` (``[output, h, c]`` for LSTM); its
backward takes a list of gradients (None for an unused one). In a functional model they
are ``name:0`` (or ``name``), ``name:1``, ``name:2``.

Initial states (Keras ``initial_state=[h, c]``): called on ``[x, *states]`` (one state
per ``n_states``, each ``(batch, units)``), the layer starts from them instead of zeros,
and its backward returns ``[dx, *dstates]``.
"""

import numpy as np

from trainer import activations as act
from trainer import initializers, regularizers
from trainer.engine.kernels import parallel, rnn_products
from trainer.distributed import shard
from trainer.engine.layer import Layer
from trainer.layers import rnn_cells
from trainer.config.families import layers
from trainer.config.registry import PositiveInt, arguments, component
from trainer.layers.argument_groups import (LAYER, RECURRENT_INITIALIZERS,
                                            RECURRENT_REGULARIZERS, RNN_OPTIONS)


class RNN(Layer):
    """Shared by SimpleRNN, LSTM and GRU: shapes, dropout, masks, direction, the input
    projection and its gradient. Subclasses name their time loop and gate count."""

    takes_mask = True
    extra_inputs = True  # [x, *initial_states]
    gates = 1
    n_states = 1
    loop_forward = None
    loop_backward = None

    def _setup(self, units, activation, use_bias, kernel_initializer, recurrent_initializer,
               bias_initializer, kernel_regularizer, recurrent_regularizer,
               bias_regularizer, dropout, recurrent_dropout, return_sequences,
               return_state, go_backwards, stateful, unroll):
        self.units = units
        self.activation = act.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        for arg, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0 <= rate < 1:
                raise self.error(f"{arg} must be in [0, 1), got {rate}")
        self.dropout = dropout
        self.recurrent_dropout = recurrent_dropout
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.go_backwards = go_backwards
        if stateful:
            raise self.error("stateful=True is not supported (batches are shuffled "
                             "and states are not kept between them)")
        self.stateful = stateful
        self.unroll = unroll  # accepted for Keras configs; the loop is the same
        self.multi_output = return_state
        self.rng = np.random.default_rng(0)  # replaced by the model's noise stream

    # -- building ---------------------------------------------------------
    def build(self, input_shape, rng):
        if isinstance(input_shape, list):  # [x, *initial states]
            input_shape, *states = input_shape
            self._check_states(states)
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise self.error(f"expects inputs of shape (timesteps, features) with known "
                             f"features, got {tuple(input_shape)}")
        n = self.gates * self.units
        self.add_weight("kernel", (input_shape[-1], n), self.kernel_initializer, rng,
                        self.kernel_regularizer)
        self.add_weight("recurrent_kernel", (self.units, n), self.recurrent_initializer,
                        rng, self.recurrent_regularizer)
        if self.use_bias:
            self.add_weight("bias", self.bias_shape(), self.bias_initializer_for(), rng,
                            self.bias_regularizer)
        self.state_shapes = [(self.units,)] * self.n_states
        out = (input_shape[0], self.units) if self.return_sequences else (self.units,)
        return [out] + self.state_shapes if self.return_state else out

    def _check_states(self, shapes):
        kind, n = type(self).__name__, self.n_states
        names = "[h, c]" if n == 2 else "[h]"
        if len(shapes) != n:
            raise self.error(f"initial_state: {kind} takes {n} initial state(s) {names} "
                             f"after its input, got {len(shapes)}")
        for k, shape in enumerate(shapes):
            if tuple(shape) != (self.units,):
                raise self.error(f"initial_state {k}: shape {(None, *shape)} doesn't fit "
                                 f"the state shape {(None, self.units)} (units={self.units})")

    def bias_shape(self):
        return (self.gates * self.units,)

    def bias_initializer_for(self):
        return self.bias_initializer

    def compute_mask(self, x, mask):
        return mask if self.return_sequences else None

    # -- running ----------------------------------------------------------
    def input_bias(self):
        return self.params["bias"] if self.use_bias else None

    def loop_args(self):
        return {"act": self.activation}

    def _dropout_mask(self, rate, shape, dtype):
        keep = 1.0 - rate
        draws = shard.draw(self.rng.random, shape)  # by the sample's global position
        return (draws < keep).astype(dtype) / dtype.type(keep)

    def forward(self, x, training, mask=None):
        listed = isinstance(x, list)
        x, *initial_state = x if listed else [x]
        B, T, D = x.shape
        dtype = x.dtype
        W, U = self.params["kernel"], self.params["recurrent_kernel"]
        xt = x.transpose(1, 0, 2)  # time-major: each step is a contiguous (B, D) block
        m = None
        if mask is not None:
            m = np.ascontiguousarray(mask.T[:, :, None], dtype=dtype)
        if self.go_backwards:
            xt = xt[::-1]
            m = None if m is None else m[::-1]
        dmask = rmask = None
        if training and self.dropout > 0:
            dmask = self._dropout_mask(self.dropout, (B, D), dtype)
            xt = xt * dmask
        if training and self.recurrent_dropout > 0:
            rmask = self._dropout_mask(self.recurrent_dropout, (B, self.units), dtype)
        X2 = np.ascontiguousarray(xt).reshape(T * B, D)
        xp = parallel.matmul(X2, W).reshape(T, B, W.shape[1])  # every step's input projection
        b = self.input_bias()
        if b is not None:
            xp += b
        if not initial_state:
            states = [np.zeros((B, self.units), dtype) for _ in range(self.n_states)]
        else:
            states = [np.asarray(s, dtype) for s in initial_state]
        H, finals, cache = type(self).loop_forward(xp, U, states, m, rmask, **self.loop_args())
        y = H.transpose(1, 0, 2) if self.return_sequences else finals[0]
        input_grad = getattr(self, "needs_input_grad", True)

        def backward(dy):
            dstates = [None] * self.n_states
            if self.return_state:
                dy, *dstates = dy
                dstates = list(dstates)
            dH = None
            if dy is not None and self.return_sequences:
                dH = dy.transpose(1, 0, 2)
            elif dy is not None:
                dstates[0] = dy if dstates[0] is None else dstates[0] + dy
            dxp, grads, dstates0 = type(self).loop_backward(cache, dH, dstates)
            for name, g in grads.items():
                self.add_grad(name, g)
            dxp2 = dxp.reshape(T * B, dxp.shape[-1])
            self.grads["kernel"] += rnn_products.weight_gradient(X2, dxp2)
            if b is not None:
                self.add_grad("input_bias", dxp2.sum(axis=0))
            if not input_grad:  # the graph's input: nobody needs its gradient
                return [None] * (1 + len(dstates0)) if listed else None
            dx = parallel.matmul(dxp2, W.T).reshape(T, B, D)
            if dmask is not None:
                dx *= dmask
            if self.go_backwards:
                dx = dx[::-1]
            dx = np.ascontiguousarray(dx.transpose(1, 0, 2))
            return [dx] + list(dstates0) if listed else dx

        if self.return_state:
            return [y] + finals, backward
        return y, backward

    def add_grad(self, name, g):
        if name == "input_bias":
            name = "bias"
        self.grads[name] += g


def _common_doc(cls):
    cls.__doc__ += """
    Args (all Keras 2 defaults):
        units: size of the output and of every state.
        activation: default tanh. use_bias: default true.
        kernel_initializer: glorot_uniform; recurrent_initializer: orthogonal;
        bias_initializer: zeros. kernel/recurrent/bias_regularizer: optional penalties.
        dropout, recurrent_dropout: fractions of the inputs / of the recurrent state
            dropped while training (one mask per batch, shared over time).
        return_sequences: output every step ``(batch, time, units)``, not only the last.
        return_state: also return the final state(s): outputs ``name:1`` (h) and, for
            LSTM, ``name:2`` (c) in a functional model (see module doc).
        go_backwards: read the sequence from its end (outputs come in that order).
        stateful: not supported (refused). unroll: accepted, no effect.
    """
    return cls


@layers.register("SimpleRNN")
@_common_doc
class SimpleRNN(RNN):
    """``h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)``."""

    loop_forward = staticmethod(rnn_cells.simple_forward)
    loop_backward = staticmethod(rnn_cells.simple_backward)

    @arguments(RECURRENT_INITIALIZERS, RECURRENT_REGULARIZERS, RNN_OPTIONS, LAYER)
    def __init__(self, units: PositiveInt, activation: component("activation") = "tanh",
                 use_bias: bool = True, **args):
        super().__init__(**LAYER.take(args))
        self._setup(units, activation, use_bias, **args)


@layers.register("LSTM")
@_common_doc
class LSTM(RNN):
    """Long short-term memory, Keras 2 formulas (gates i, f, c, o in the weights)::

        i = ra(x W_i + h U_i + b_i)   f = ra(x W_f + h U_f + b_f)   o = ra(x W_o + h U_o + b_o)
        c = f * c + i * a(x W_c + h U_c + b_c)        h = o * a(c)

    with ``a`` = activation, ``ra`` = recurrent_activation (default hard_sigmoid).
    ``unit_forget_bias`` (default true) starts the forget-gate bias at 1.
    """

    gates = 4
    n_states = 2
    loop_forward = staticmethod(rnn_cells.lstm_forward)
    loop_backward = staticmethod(rnn_cells.lstm_backward)

    @arguments("units", "activation", "recurrent_activation", "use_bias",
               RECURRENT_INITIALIZERS, "unit_forget_bias", RECURRENT_REGULARIZERS,
               RNN_OPTIONS, LAYER)
    def __init__(self, units: PositiveInt, activation: component("activation") = "tanh",
                 recurrent_activation: component("activation") = "hard_sigmoid",
                 use_bias: bool = True, unit_forget_bias: bool = True, **args):
        super().__init__(**LAYER.take(args))
        self._setup(units, activation, use_bias, **args)
        self.recurrent_activation = act.get(recurrent_activation)
        self.unit_forget_bias = unit_forget_bias

    def bias_initializer_for(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        base, u = self.bias_initializer, self.units

        def init(shape, rng, dtype):  # Keras: [init(u), ones(u), init(2u)]
            return np.concatenate([base((u,), rng, dtype), np.ones(u, dtype),
                                   base((2 * u,), rng, dtype)])
        return init

    def loop_args(self):
        return {"act": self.activation, "ract": self.recurrent_activation}


@layers.register("GRU")
@_common_doc
class GRU(RNN):
    """Gated recurrent unit, Keras 2 formulas (gates z, r, h in the weights)::

        z = ra(x W_z + h U_z + b_z)     r = ra(x W_r + h U_r + b_r)
        reset_after=False:  h~ = a(x W_h + (r * h) U_h + b_h)
        reset_after=True:   h~ = a(x W_h + b_h + r * (h U_h + rb_h))   (and rb on z, r)
        h = z * h + (1 - z) * h~

    ``reset_after`` (default true, tf.keras 2 and CuDNN-compatible) keeps a second,
    recurrent bias: ``bias`` is ``(2, 3*units)``, row 0 input bias, row 1 recurrent bias.
    """

    gates = 3
    loop_forward = staticmethod(rnn_cells.gru_forward)
    loop_backward = staticmethod(rnn_cells.gru_backward)

    @arguments("units", "activation", "recurrent_activation", "use_bias",
               RECURRENT_INITIALIZERS, RECURRENT_REGULARIZERS, RNN_OPTIONS, "reset_after",
               LAYER)
    def __init__(self, units: PositiveInt, activation: component("activation") = "tanh",
                 recurrent_activation: component("activation") = "hard_sigmoid",
                 use_bias: bool = True, reset_after: bool = True, **args):
        super().__init__(**LAYER.take(args))
        self._setup(units, activation, use_bias, **args)
        self.recurrent_activation = act.get(recurrent_activation)
        self.reset_after = reset_after

    def bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def input_bias(self):
        if not self.use_bias:
            return None
        b = self.params["bias"]
        return b[0] if self.reset_after else b

    def loop_args(self):
        rbias = self.params["bias"][1] if (self.use_bias and self.reset_after) else None
        return {"act": self.activation, "ract": self.recurrent_activation,
                "reset_after": self.reset_after, "rbias": rbias}

    def add_grad(self, name, g):
        if self.reset_after and name in ("input_bias", "recurrent_bias"):
            if self.use_bias:
                self.grads["bias"][0 if name == "input_bias" else 1] += g
            return
        super().add_grad(name, g)
