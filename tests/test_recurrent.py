import numpy as np
import pytest

from gradcheck import check_layer
from trainer.engine.graph import Graph
from trainer.engine.layer import Layer
from trainer.errors import ConfigError
from trainer.config.families import activations, layers

B, T, D, U = 2, 4, 3, 3
BIAS = {"random_normal": {"stddev": 0.5}}  # non-zero biases exercise every term


def make(name, **args):
    return layers.get({name: dict({"units": U, "bias_initializer": BIAS}, **args)})


def mask_of(rng):
    """A (B, T) mask with pre-padding in row 0 and a hole in the middle of row 1."""
    m = np.ones((B, T), bool)
    m[0, :2] = False
    m[1, 2] = False
    return m


class WithMask(Layer):
    """Test adapter: check_layer on ``layer.forward(x, mask=...)``, or on a layer with
    return_state (outputs concatenated on the last axis)."""

    def __init__(self, layer, mask=None):
        super().__init__(name="adapter")
        self.layer, self.mask = layer, mask
        self.rng = np.random.default_rng(0)  # check_layer resets it before every run

    def build(self, input_shape, rng):
        out = self.layer.build(input_shape, rng)
        self.layer.built = True
        self._sync()
        if self.layer.return_state:  # [output shape, *state shapes]
            return (*out[0][:-1], sum(s[-1] for s in out))
        return out

    def _sync(self):
        self.params, self.grads = self.layer.params, self.layer.grads

    def cast(self, dtype):
        self.layer.cast(dtype)
        self._sync()

    def forward(self, x, training):
        self.layer.rng = self.rng
        y, back = self.layer.forward(x, training, mask=self.mask)
        if not self.layer.return_state:
            return y, back
        sizes = [a.shape[-1] for a in y]
        if self.layer.return_sequences:  # states are (B, U): compare with the last step
            raise AssertionError("adapter wants return_sequences=False")
        cuts = np.cumsum(sizes)[:-1]
        return np.concatenate(y, axis=-1), lambda dy: back(np.split(dy, cuts, axis=-1))


# -- gradients through time -----------------------------------------------------------
VARIANTS = [
    ("SimpleRNN", {}),
    ("SimpleRNN", {"return_sequences": True, "go_backwards": True}),
    ("LSTM", {}),
    ("LSTM", {"return_sequences": True}),
    ("LSTM", {"go_backwards": True, "recurrent_activation": "sigmoid"}),
    ("LSTM", {"unit_forget_bias": False, "use_bias": False}),
    ("LSTM", {"activation": "sigmoid", "return_sequences": True}),  # the NumPy path
    ("GRU", {}),
    ("GRU", {"reset_after": False}),
    ("GRU", {"reset_after": False, "return_sequences": True, "go_backwards": True}),
    ("GRU", {"reset_after": True, "return_sequences": True, "activation": "sigmoid"}),
]


@pytest.mark.parametrize("name,args", VARIANTS, ids=lambda v: str(v))
def test_gradients(rng, name, args):
    check_layer(make(name, **args), rng.normal(size=(B, T, D)))


@pytest.mark.parametrize("name,args", [("SimpleRNN", {}), ("LSTM", {}), ("GRU", {}),
                                       ("GRU", {"reset_after": False})])
@pytest.mark.parametrize("seq", [False, True])
def test_gradients_with_dropout(rng, name, args, seq):
    layer = make(name, dropout=0.3, recurrent_dropout=0.4, return_sequences=seq, **args)
    check_layer(layer, rng.normal(size=(B, T, D)))


@pytest.mark.parametrize("name,args", [("SimpleRNN", {}), ("LSTM", {}), ("GRU", {}),
                                       ("GRU", {"reset_after": False}),
                                       ("LSTM", {"activation": "sigmoid"})])
@pytest.mark.parametrize("seq,back", [(False, False), (True, False), (True, True)])
def test_gradients_with_mask(rng, name, args, seq, back):
    layer = make(name, return_sequences=seq, go_backwards=back, **args)
    check_layer(WithMask(layer, mask_of(rng)), rng.normal(size=(B, T, D)))


@pytest.mark.parametrize("name,args", [("SimpleRNN", {}), ("LSTM", {}),
                                       ("GRU", {"reset_after": False})])
def test_gradients_of_returned_states(rng, name, args):
    layer = make(name, return_state=True, **args)
    check_layer(WithMask(layer, mask_of(rng)), rng.normal(size=(B, T, D)))


# -- forward values against a plain step-by-step NumPy reference (Keras formulas) -------
def hard_sigmoid(x):
    return np.clip(0.2 * x + 0.5, 0, 1)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def reference(layer, x, mask=None):
    """One sample and one step at a time, as Keras 2 writes the cells."""
    name = type(layer).__name__
    W, Ur = layer.params["kernel"], layer.params["recurrent_kernel"]
    bias = layer.params.get("bias")
    ra = {"hard_sigmoid": hard_sigmoid, "sigmoid": sigmoid}.get(
        getattr(getattr(layer, "recurrent_activation", None), "registered_name", None))
    a = np.tanh
    u = layer.units
    outs, finals = [], []
    for n in range(len(x)):
        h, c = np.zeros(u), np.zeros(u)
        seq = []
        steps = range(T - 1, -1, -1) if layer.go_backwards else range(T)
        for t in steps:
            xt = x[n, t]
            if name == "SimpleRNN":
                hn, cn = a(xt @ W + h @ Ur + bias), c
            elif name == "LSTM":
                z = xt @ W + h @ Ur + bias
                i, f = ra(z[:u]), ra(z[u:2 * u])
                cn = f * c + i * a(z[2 * u:3 * u])
                hn = ra(z[3 * u:]) * a(cn)
            else:
                if layer.reset_after:
                    xz = xt @ W + bias[0]
                    hu = h @ Ur + bias[1]
                    z, r = ra(xz[:u] + hu[:u]), ra(xz[u:2 * u] + hu[u:2 * u])
                    hh = a(xz[2 * u:] + r * hu[2 * u:])
                else:
                    xz = xt @ W + bias
                    z = ra(xz[:u] + h @ Ur[:, :u])
                    r = ra(xz[u:2 * u] + h @ Ur[:, u:2 * u])
                    hh = a(xz[2 * u:] + (r * h) @ Ur[:, 2 * u:])
                hn, cn = z * h + (1 - z) * hh, c
            if mask is None or mask[n, t]:
                h, c = hn, cn
            seq.append(h)
        outs.append(np.stack(seq) if layer.return_sequences else h)
        finals.append((h, c))
    return np.stack(outs), finals


@pytest.mark.parametrize("name,args", [
    ("SimpleRNN", {}), ("LSTM", {}), ("LSTM", {"recurrent_activation": "sigmoid"}),
    ("GRU", {}), ("GRU", {"reset_after": False}),
    ("LSTM", {"return_sequences": True, "go_backwards": True}),
    ("GRU", {"return_sequences": True, "reset_after": False}),
])
@pytest.mark.parametrize("masked", [False, True])
def test_forward_matches_keras_formulas(rng, name, args, masked):
    layer = make(name, **args)
    x = rng.normal(size=(B, T, D))
    mask = mask_of(rng) if masked else None
    y = check_layer(WithMask(layer, mask), x)
    expected, _ = reference(layer, x, mask)
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("masked", [False, True])
def test_fused_lstm_kernels_match_the_numpy_path(rng, monkeypatch, masked):
    from trainer.layers import rnn_cells

    x = rng.normal(size=(B, T, D))
    mask = mask_of(rng) if masked else None
    results = []
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(rnn_cells, "_fused", lambda act, ract: None)
        layer = make("LSTM", return_sequences=True, dropout=0.2, recurrent_dropout=0.2)
        y = check_layer(WithMask(layer, mask), x)
        results.append((y, {k: v.copy() for k, v in layer.grads.items()}))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12)
    for k in results[0][1]:
        np.testing.assert_allclose(results[0][1][k], results[1][1][k], rtol=1e-9, err_msg=k)


def test_float32_lstm_is_close_to_float64(rng):
    x = rng.normal(size=(B, T, D))
    layer = make("LSTM", return_sequences=True, recurrent_activation="sigmoid")
    y64 = check_layer(layer, x)
    layer.cast(np.float32)
    y32, _ = layer.forward(x.astype(np.float32), training=False)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, atol=2e-6)


def test_masked_steps_repeat_the_previous_output_and_padding_is_ignored(rng):
    layer = make("LSTM", return_sequences=True)
    x = rng.normal(size=(B, T, D))
    mask = mask_of(rng)
    y = check_layer(WithMask(layer, mask), x)
    np.testing.assert_array_equal(y[0, :2], 0)  # pre-padding: the zero initial state
    np.testing.assert_array_equal(y[1, 2], y[1, 1])  # a hole repeats the last output
    # the last output of a pre-padded sequence is that of the sequence alone
    last = make("LSTM")
    last.dtype = np.float64
    last.build((None, D), rng)
    last.set_weights(layer.get_weights())
    alone, _ = last.forward(x[:1, 2:], training=False)
    padded, _ = last.forward(x[:1], training=False, mask=mask[:1])
    np.testing.assert_allclose(padded, alone, rtol=1e-12)


def test_go_backwards_reads_the_reversed_sequence(rng):
    x = rng.normal(size=(B, T, D))
    back = make("GRU", go_backwards=True, return_sequences=True)
    y_back = check_layer(back, x)
    fwd = make("GRU", return_sequences=True)
    fwd.dtype = np.float64
    fwd.build((T, D), rng)
    fwd.set_weights(back.get_weights())
    y_fwd, _ = fwd.forward(x[:, ::-1], training=False)
    np.testing.assert_allclose(y_back, y_fwd, rtol=1e-12)


def test_return_state_gives_output_and_states(rng):
    layer = make("LSTM", return_state=True)
    x = rng.normal(size=(B, T, D))
    check_layer(WithMask(layer), x)
    (y, h, c), _ = layer.forward(x, training=False)
    _, finals = reference(layer, x)
    np.testing.assert_allclose(h, y)
    np.testing.assert_allclose(c, np.stack([f[1] for f in finals]), rtol=1e-10)
    seq = make("GRU", return_state=True, return_sequences=True)
    seq.dtype = np.float64
    seq.build((T, D), rng)
    (ys, hs), back = seq.forward(x, training=True)
    assert ys.shape == (B, T, U) and hs.shape == (B, U)
    np.testing.assert_allclose(ys[:, -1], hs)
    assert back([None, np.ones((B, U))]).shape == x.shape  # only the state's gradient


def test_return_state_gives_several_tensors_in_a_graph(rng):
    graph = Graph(["x"], [(T, D)])
    assert graph.add(make("GRU", return_state=True), [0], rng) == [1, 2]
    assert graph.shapes[1:] == [(U,), (U,)]


def test_dropout_is_off_at_inference_and_on_in_training(rng):
    x = rng.normal(size=(B, T, D))
    drop = make("LSTM", dropout=0.5, recurrent_dropout=0.5)
    plain = make("LSTM")
    for layer in (drop, plain):
        layer.build((T, D), np.random.default_rng(3))
    x32 = x.astype(np.float32)
    np.testing.assert_array_equal(drop.forward(x32, False)[0], plain.forward(x32, False)[0])
    assert not np.allclose(drop.forward(x32, True)[0], plain.forward(x32, True)[0])


def test_keras_weight_layouts_and_initial_values(rng):
    shapes = {}
    for name, args in [("SimpleRNN", {}), ("LSTM", {}), ("GRU", {}),
                       ("GRU", {"reset_after": False})]:
        layer = layers.get({name: dict({"units": 5}, **args)})
        layer.build((7, 4), rng)
        shapes[name + str(args)] = [w.shape for w in layer.get_weights()]
        Ur = layer.params["recurrent_kernel"].astype(np.float64)
        np.testing.assert_allclose(Ur @ Ur.T, np.eye(5), atol=1e-5)  # orthonormal rows
    assert shapes == {
        "SimpleRNN{}": [(4, 5), (5, 5), (5,)],
        "LSTM{}": [(4, 20), (5, 20), (20,)],
        "GRU{}": [(4, 15), (5, 15), (2, 15)],
        "GRU{'reset_after': False}": [(4, 15), (5, 15), (15,)],
    }
    lstm = layers.get({"LSTM": {"units": 5}})
    lstm.build((7, 4), rng)
    np.testing.assert_array_equal(lstm.params["bias"], [0] * 5 + [1] * 5 + [0] * 10)


def test_regularizers_reach_the_model(rng):
    layer = make("GRU", kernel_regularizer="l2", recurrent_regularizer={"l1": 0.1},
                 bias_regularizer="l2")
    layer.build((T, D), rng)
    assert sorted(layer.regularizers) == ["bias", "kernel", "recurrent_kernel"]


def test_hard_sigmoid_is_keras_2():
    x = np.array([-3.0, -2.5, -1.0, 0.0, 1.0, 2.5, 3.0])
    np.testing.assert_allclose(activations.get("hard_sigmoid").forward(x),
                               [0, 0, 0.3, 0.5, 0.7, 1, 1])


def test_bad_arguments_are_config_errors(rng):
    with pytest.raises(ConfigError, match="dropout"):
        make("LSTM", dropout=1.0)
    with pytest.raises(ConfigError, match="stateful"):
        make("GRU", stateful=True)
    with pytest.raises(ConfigError, match="timesteps, features"):
        make("LSTM").build((5,), rng)


def test_mask_flows_from_embedding_through_dropout_to_lstm(rng):
    emb = layers.get({"Embedding": {"input_dim": 6, "output_dim": 3, "mask_zero": True}})
    drop = layers.get({"Dropout": {"rate": 0.5}})
    lstm = layers.get({"LSTM": {"units": 2, "return_sequences": True}})
    graph = Graph(["tokens"], [(5,)])
    t = graph.add(emb, [0], rng)
    t = graph.add(drop, [t], rng)
    graph.outputs = [graph.add(lstm, [t], rng)]
    ids = np.array([[0, 0, 3, 4, 5], [1, 2, 0, 3, 0]])
    (y,) = graph.forward([ids], training=False)
    np.testing.assert_array_equal(y[0, :2], 0)
    np.testing.assert_array_equal(y[1, 2], y[1, 1])
    np.testing.assert_array_equal(y[1, 4], y[1, 3])
    graph.forward([ids], training=True)
    graph.backward([np.ones_like(y)])
    assert np.abs(emb.grads["embeddings"][0]).sum() == 0  # padding gets no gradient
