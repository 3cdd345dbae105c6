"""MultiHeadAttention: Keras's formula and weight layout, masks, gradients."""

from pathlib import Path

import numpy as np
import pytest

from gradcheck import check_layer, check_model
from trainer.build.builder import build_model
from trainer.config.loader import from_dict
from trainer.errors import ConfigError
from trainer.config.families import layers


def make(**args):
    layer = layers.get({"MultiHeadAttention": {"num_heads": 2, "key_dim": 3, **args}})
    layer.name = "mha"
    return layer


def reference(layer, q, v, k=None, allowed=None):
    """Keras's MultiHeadAttention written out with einsum (float64)."""
    p = {n: w.astype(np.float64) for n, w in layer.params.items()}
    k = v if k is None else k
    b = (lambda n: p[n]) if layer.use_bias else (lambda n: 0.0)
    Q = np.einsum("btd,dhk->bthk", q, p["query/kernel"]) + b("query/bias")
    K = np.einsum("bsd,dhk->bshk", k, p["key/kernel"]) + b("key/bias")
    V = np.einsum("bsd,dhv->bshv", v, p["value/kernel"]) + b("value/bias")
    scores = np.einsum("bthk,bshk->bhts", Q / np.sqrt(layer.key_dim), K)
    if allowed is not None:
        scores = scores + (1.0 - allowed[:, None]) * -1e9
    e = np.exp(scores - scores.max(-1, keepdims=True))
    P = e / e.sum(-1, keepdims=True)
    O = np.einsum("bhts,bshv->bthv", P, V)
    return np.einsum("bthv,hvo->bto", O, p["attention_output/kernel"]) + \
        b("attention_output/bias")


@pytest.mark.parametrize("args", [{}, {"value_dim": 4, "output_shape": 5},
                                  {"use_bias": False, "num_heads": 3}])
@pytest.mark.parametrize("inputs", ["self", "qv", "qvk"])
def test_forward_matches_keras_formula_and_gradients(rng, args, inputs):
    layer = make(**args)
    q = rng.normal(size=(2, 4, 6))
    v = rng.normal(size=(2, 5, 3))
    k = rng.normal(size=(2, 5, 7))
    x = {"self": q, "qv": [q, v], "qvk": [q, v, k]}[inputs]
    y = check_layer(layer, x, training=False)
    want = {"self": lambda: reference(layer, q, q), "qv": lambda: reference(layer, q, v),
            "qvk": lambda: reference(layer, q, v, k)}[inputs]()
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-12)
    out = args.get("output_shape", 6)
    assert y.shape == (2, 4, out)
    h, kd = layer.num_heads, layer.key_dim
    vd = args.get("value_dim", kd)
    d_k = {"self": 6, "qv": 3, "qvk": 7}[inputs]
    d_v = 6 if inputs == "self" else 3
    shapes = [("query/kernel", (6, h, kd)), ("query/bias", (h, kd)),
              ("key/kernel", (d_k, h, kd)), ("key/bias", (h, kd)),
              ("value/kernel", (d_v, h, vd)), ("value/bias", (h, vd)),
              ("attention_output/kernel", (h, vd, out)), ("attention_output/bias", (out,))]
    if not layer.use_bias:
        shapes = [s for s in shapes if s[0].endswith("kernel")]
    # Keras's weight order and shapes
    assert [(n, w.shape) for n, w in layer.params.items()] == shapes


def test_causal_and_padding_masks_as_keras(rng):
    layer = make(use_causal_mask=True)
    q = rng.normal(size=(2, 4, 6)).astype(np.float32)
    layer.build((4, 6), rng)
    layer.built = True
    qmask = np.array([[True, True, True, False], [True, True, False, False]])
    y, _ = layer.forward(q, training=False, mask=qmask)
    allowed = qmask[:, :, None] & qmask[:, None, :] & np.tril(np.ones((4, 4), bool))[None]
    want = reference(layer, q.astype(np.float64), q, None, allowed.astype(np.float64))
    # rows of masked query steps see every score pushed by -1e9, which float32 rounds
    # away (uniform attention, as in Keras); they are masked downstream: compare the rest
    np.testing.assert_allclose(y[qmask], want[qmask], rtol=2e-5, atol=2e-6)
    # a position never sees a later one: changing step 3 leaves steps 0-2 unchanged
    later = q.copy()
    later[:, 3] += 5.0
    y2, _ = layer.forward(later, training=False, mask=None)
    y1, _ = layer.forward(q, training=False, mask=None)
    np.testing.assert_allclose(y1[:, :3], y2[:, :3], rtol=1e-6)
    assert layer.compute_mask(q, qmask) is qmask


def test_value_mask_hides_padded_positions_and_gradients_check(tmp_path):
    """Embedding(mask_zero) on the value side: padded value positions get no
    attention (their contents change nothing); the model-level float64 check covers
    the masked softmax's gradient."""
    cfg = from_dict({
        "data": {"train": {"dataset": "iris"}},
        "model": {
            "inputs": {"q": {"shape": [3, 4]}, "ids": {"shape": [5]}},
            "layers": [
                {"Embedding": {"name": "emb", "input_dim": 7, "output_dim": 4,
                               "mask_zero": True, "inputs": "ids"}},
                {"MultiHeadAttention": {"name": "att", "num_heads": 2, "key_dim": 2,
                                        "inputs": ["q", "emb"]}},
                {"GlobalAveragePooling1D": {"name": "pool"}},
                {"Dense": {"name": "out", "units": 3, "activation": "softmax"}}],
            "outputs": ["out"]},
        "compile": {"loss": "categorical_crossentropy", "optimizer": "sgd"}},
        Path("t.yaml"))
    model = build_model(cfg)
    rng = np.random.default_rng(0)
    q = rng.normal(size=(3, 3, 4)).astype(np.float32)
    ids = np.array([[1, 2, 3, 0, 0], [4, 5, 0, 0, 0], [6, 1, 2, 3, 4]])
    y = model.predict_on_batch([q, ids])[0]
    emb = model.layers[0].params["embeddings"]
    emb[0] += 3.0  # the padding id's vector: masked, so nothing may change
    np.testing.assert_allclose(model.predict_on_batch([q, ids])[0], y, rtol=1e-6)
    labels = np.eye(3)[[0, 2, 1]]
    check_model(model, [q, ids], [labels])


def test_dropout_on_the_probabilities_only_in_training(rng):
    layer = make(dropout=0.5)
    x = rng.normal(size=(3, 4, 6)).astype(np.float32)
    layer.build((4, 6), rng)
    layer.built = True
    a, _ = layer.forward(x, training=False)
    b, _ = layer.forward(x, training=False)
    np.testing.assert_array_equal(a, b)
    c, back = layer.forward(x, training=True)
    assert not np.allclose(a, c)
    assert back(np.ones_like(c)).shape == x.shape
    # with one dropout mask held fixed, the gradients check too
    check_layer(make(dropout=0.3), rng.normal(size=(2, 4, 6)), training=True)


def test_bad_calls_are_config_errors(rng):
    with pytest.raises(ConfigError, match="rank 3"):
        make().build((6,), rng)
    with pytest.raises(ConfigError, match="same number of steps"):
        make().build([(4, 6), (5, 3), (6, 3)], rng)
    with pytest.raises(ConfigError, match=r"\[query, value\]"):
        make().build([(4, 6), (5, 3), (5, 3), (5, 3)], rng)


def test_resolved_config_keeps_the_output_shape_argument(rng):
    from trainer.config.registry import config_of

    layer = make(output_shape=5)
    layer.build((4, 6), rng)
    assert config_of(layer)["MultiHeadAttention"]["output_shape"] == 5
    assert config_of(make())["MultiHeadAttention"]["output_shape"] is None


def test_keras_attention_calls_import_in_both_forms():
    """tf.keras lists value/key as keywords of the query's inbound node; Keras 3 as
    call args or kwargs: each becomes inputs [query, value(, key)]."""
    from trainer.keras_io.translate import translate_model

    def inp(name, fmt):
        shape = {"batch_input_shape" if fmt == 2 else "batch_shape": [None, 5, 4]}
        return {"class_name": "InputLayer", "name": name, "inbound_nodes": [],
                "config": {**shape, "dtype": "float32", "name": name}}

    mha = {"name": "att", "num_heads": 2, "key_dim": 3, "value_dim": None, "dropout": 0.0,
           "use_bias": True, "output_shape": None, "attention_axes": None,
           "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
           "bias_initializer": {"class_name": "Zeros", "config": {}},
           "kernel_regularizer": None, "bias_regularizer": None,
           "activity_regularizer": None, "kernel_constraint": None,
           "bias_constraint": None}

    def t(layer):
        return {"class_name": "__keras_tensor__",
                "config": {"shape": [None, 5, 4], "dtype": "float32",
                           "keras_history": [layer, 0, 0]}}

    k2 = {"class_name": "Functional", "config": {
        "name": "m", "layers": [inp("q", 2), inp("v", 2), {
            "class_name": "MultiHeadAttention", "name": "att", "config": mha,
            "inbound_nodes": [[["q", 0, 0, {"value": ["v", 0, 0]}]]]}],
        "input_layers": [["q", 0, 0], ["v", 0, 0]], "output_layers": [["att", 0, 0]]}}
    k3 = {"class_name": "Functional", "config": {
        "name": "m", "layers": [inp("q", 3), inp("v", 3), {
            "class_name": "MultiHeadAttention", "name": "att", "config": mha,
            "inbound_nodes": [{"args": [t("q")], "kwargs": {"value": t("v")}}]}],
        "input_layers": [["q", 0, 0], ["v", 0, 0]], "output_layers": [["att", 0, 0]]}}
    for record in (k2, k3):
        model, problems = translate_model(record)
        assert not problems.layers and not problems.items, problems.items
        (entry,) = [e for e in model["layers"] if "MultiHeadAttention" in e]
        assert entry["MultiHeadAttention"]["inputs"] == ["q", "v"]
        assert entry["MultiHeadAttention"]["num_heads"] == 2


# -- Attention (Luong) and AdditiveAttention (Bahdanau) --------------------------------

def dense_reference(kind, q, v, k, scale, vmask=None, qmask=None, causal=False):
    """Keras's BaseDenseAttention written out (float64)."""
    if kind == "Attention":
        s = np.einsum("bid,bjd->bij", q, k) * (1.0 if scale is None else scale)
    else:
        h = np.tanh(q[:, :, None, :] + k[:, None, :, :])
        s = (h * (1.0 if scale is None else scale)).sum(-1)
    allowed = np.ones(s.shape, bool)
    if vmask is not None:
        allowed &= vmask[:, None, :]
    if causal:
        allowed &= np.tril(np.ones(s.shape[1:], bool))[None]
    s = s - 1e9 * ~allowed
    e = np.exp(s - s.max(-1, keepdims=True))
    y = (e / e.sum(-1, keepdims=True)) @ v
    return y if qmask is None else y * qmask[:, :, None]


@pytest.mark.parametrize("spec", [{"Attention": {}},
                                  {"Attention": {"use_scale": True, "use_causal_mask": True}},
                                  {"AdditiveAttention": {}},
                                  {"AdditiveAttention": {"use_scale": False, "causal": True}},
                                  {"Attention": {"dropout": 0.3}}])
@pytest.mark.parametrize("with_key", [False, True])
def test_dense_attention_matches_keras_and_gradients(rng, spec, with_key):
    layer = layers.get(spec)
    layer.name = "att"
    q = rng.normal(size=(2, 4, 3))
    v = rng.normal(size=(2, 5, 6 if with_key else 3))
    k = rng.normal(size=(2, 5, 3)) if with_key else v
    xs = [q, v, k] if with_key else [q, v]
    check_layer(layer, xs, training=True)  # one dropout mask held fixed
    (name, args), = spec.items()
    scale = layer.params.get("scale")
    want = dense_reference(name, q, v, k, scale,
                           causal=args.get("use_causal_mask") or args.get("causal", False))
    y, _ = layer.forward(xs, training=False)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-12)
    assert y.shape == (2, 4, v.shape[-1])
    if name == "AdditiveAttention" and args.get("use_scale", True):
        assert layer.params["scale"].shape == (3,)
    if name == "Attention" and args.get("use_scale"):
        assert layer.params["scale"].shape == () and layer.params["scale"] == 1.0


@pytest.mark.parametrize("kind", ["Attention", "AdditiveAttention"])
def test_dense_attention_masks_as_keras(rng, kind):
    layer = layers.get({kind: {}})
    layer.name = "att"
    q = rng.normal(size=(2, 4, 3))
    v = rng.normal(size=(2, 5, 3))
    layer.build([(4, 3), (5, 3)], rng)
    layer.built = True
    layer.cast(np.float64)
    qmask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    vmask = np.array([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]], bool)
    y, back = layer.forward([q, v], training=False, mask=[qmask, vmask])
    want = dense_reference(kind, q, v, v, layer.params.get("scale"), vmask, qmask)
    np.testing.assert_allclose(y, want, rtol=1e-9, atol=1e-12)
    assert not y[~qmask].any()
    dq, dv = back(np.ones_like(y))
    assert not dv[~vmask].any()  # padded values get no attention, so no gradient
    assert layer.compute_mask([q, v], [qmask, vmask]) is qmask


def test_seq2seq_attention_model_gradients(tmp_path):
    """A decoder attending over a padded encoder sequence (Embedding mask_zero on the
    source): the model-level float64 check through masks and both attention kinds."""
    cfg = from_dict({
        "data": {"train": {"dataset": "iris"}},
        "model": {
            "inputs": {"src": {"shape": [5]}, "tgt": {"shape": [3, 4]}},
            "layers": [
                {"Embedding": {"name": "emb", "input_dim": 7, "output_dim": 4,
                               "mask_zero": True, "inputs": "src"}},
                {"Attention": {"name": "luong", "use_scale": True, "inputs": ["tgt", "emb"]}},
                {"AdditiveAttention": {"name": "bahdanau", "inputs": ["tgt", "emb"]}},
                {"Concatenate": {"name": "both", "inputs": ["luong", "bahdanau"]}},
                {"Dense": {"name": "out", "units": 3, "activation": "softmax"}}],
            "outputs": ["out"]},
        "compile": {"loss": "sparse_categorical_crossentropy", "optimizer": "sgd"}},
        Path("t.yaml"))
    model = build_model(cfg)
    rng = np.random.default_rng(5)
    ids = np.array([[1, 2, 3, 0, 0], [4, 5, 0, 0, 0], [6, 1, 2, 3, 4]])
    tgt = rng.normal(size=(3, 3, 4))
    labels = rng.integers(0, 3, (3, 3))
    check_model(model, [ids, tgt], [labels])


def test_export_writes_attention_calls_as_tf_keras_and_reads_them_back():
    """MultiHeadAttention's value/key go out as keywords of the query's inbound node
    and use_causal_mask as a call argument (Keras's constructor has neither); the
    translation back gives the same graph."""
    from trainer.keras_io.export import keras_config
    from trainer.keras_io.translate import translate_model

    cfg = from_dict({
        "data": {"train": {"dataset": "iris"}},
        "model": {
            "inputs": {"q": {"shape": [3, 4]}, "v": {"shape": [5, 4]}},
            "layers": [
                {"MultiHeadAttention": {"name": "self", "num_heads": 2, "key_dim": 2,
                                        "use_causal_mask": True, "inputs": "q"}},
                {"MultiHeadAttention": {"name": "cross", "num_heads": 1, "key_dim": 3,
                                        "inputs": ["self", "v"]}},
                {"Attention": {"name": "luong", "use_causal_mask": True,
                               "inputs": ["cross", "v"]}},
                {"AdditiveAttention": {"name": "old", "causal": True,  # Keras 2's name
                                       "inputs": ["luong", "v"]}},
                {"GlobalAveragePooling1D": {"name": "pool"}},
                {"Dense": {"name": "out", "units": 2, "activation": "softmax"}}],
            "outputs": ["out"]},
        "compile": {"loss": "categorical_crossentropy", "optimizer": "sgd"}},
        Path("t.yaml"))
    model = build_model(cfg)
    records = {r["name"]: r for r in keras_config(model)["config"]["layers"]}
    assert records["self"]["inbound_nodes"] == [[["q", 0, 0, {
        "use_causal_mask": True, "value": ["q", 0, 0]}]]]
    assert records["cross"]["inbound_nodes"] == [[["self", 0, 0, {"value": ["v", 0, 0]}]]]
    assert records["luong"]["inbound_nodes"] == [[["cross", 0, 0, {"use_causal_mask": True}],
                                                  ["v", 0, 0, {"use_causal_mask": True}]]]
    # Keras 3 has no `causal` (tf.keras deprecated it in 2.10): the call argument instead
    assert records["old"]["inbound_nodes"][0][0][3] == {"use_causal_mask": True}
    assert "causal" not in records["old"]["config"]
    for name in ("self", "cross", "luong", "old"):
        assert "use_causal_mask" not in records[name]["config"]
        # the module, as tf.keras 2.13+ writes it: Keras 3 needs it for nested layers
        assert records[name]["module"] == "keras.layers"
    back, problems = translate_model(keras_config(model))
    assert not problems.layers and not problems.items, problems.items
    entries = {next(iter(e.values()))["name"]: next(iter(e.values()))
               for e in back["layers"] if "call" not in e}
    assert entries["self"]["use_causal_mask"] is True
    assert entries["self"]["inputs"] == ["q", "q"]  # value given explicitly, as Keras
    assert entries["cross"]["inputs"] == ["self", "v"]
    assert "use_causal_mask" not in entries["cross"]
    assert entries["luong"]["use_causal_mask"] is True
    assert entries["old"]["use_causal_mask"] is True
