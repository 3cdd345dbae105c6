"""ZeroPadding1D, Cropping1D, UpSampling1D, Masking and ThresholdedReLU: values against
plain NumPy, gradients, shapes, errors, masks, and a tiny end-to-end fit."""

import numpy as np
import pytest

from gradcheck import check_layer
from trainer.app import fit as api
from trainer.config.loader import from_dict
from trainer.engine.graph import Graph
from trainer.errors import ConfigError, DataError
from trainer.config.families import layers


def make(kind, **args):
    return layers.get({kind: args})


@pytest.mark.parametrize("padding,expect", [(1, (1, 1)), (2, (2, 2)), ([0, 2], (0, 2)),
                                            ([2, 1], (2, 1))])
def test_zero_padding_and_cropping_1d(rng, padding, expect):
    x = rng.normal(size=(2, 5, 3))
    pad = make("ZeroPadding1D", padding=padding)
    assert pad.build((5, 3), rng) == (5 + sum(expect), 3)
    assert pad.build((None, 3), rng) == (None, 3)
    y = check_layer(make("ZeroPadding1D", padding=padding), x)
    np.testing.assert_array_equal(y, np.pad(x, ((0, 0), expect, (0, 0))))
    crop = make("Cropping1D", cropping=padding)
    assert crop.build((9, 3), rng) == (9 - sum(expect), 3)
    y2 = check_layer(crop, y)  # cropping what was padded gives the input back
    np.testing.assert_array_equal(y2, x)
    left, right = expect
    z = check_layer(make("Cropping1D", cropping=padding), x)
    np.testing.assert_array_equal(z, x[:, left:5 - right])


def test_defaults_are_keras_2s(rng):
    x = rng.normal(size=(2, 4, 3)).astype(np.float32)
    y, _ = make("ZeroPadding1D").forward(x, False)
    np.testing.assert_array_equal(y, np.pad(x, ((0, 0), (1, 1), (0, 0))))
    y, _ = make("Cropping1D").forward(x, False)
    np.testing.assert_array_equal(y, x[:, 1:3])
    y, _ = make("UpSampling1D").forward(x, False)
    np.testing.assert_array_equal(y, np.repeat(x, 2, axis=1))
    assert make("Masking").mask_value == 0.0 and make("ThresholdedReLU").theta == 1.0
    for kind in ("ZeroPadding1D", "Cropping1D", "UpSampling1D", "Masking",
                 "ThresholdedReLU"):  # float32 in, float32 out, both ways
        y, back = make(kind).forward(x, True)
        assert y.dtype == np.float32 and back(np.ones_like(y)).dtype == np.float32, kind


def test_cropping_errors(rng):
    with pytest.raises(ConfigError, match=r"'c' \(Cropping1D\): cropping 2\+3 steps "
                                          r"leaves nothing of an input of 5 steps"):
        make("Cropping1D", cropping=[2, 3], name="c").build((5, 3), rng)
    with pytest.raises(ConfigError, match="cropping 3\\+3 steps .* of 5 steps"):
        make("Cropping1D", cropping=3).build((5, 3), rng)
    assert make("Cropping1D", cropping=[2, 2]).build((5, 3), rng) == (1, 3)
    # steps unknown when built: refused when a too-short batch comes
    crop = make("Cropping1D", cropping=[2, 2], name="c")
    crop.build((None, 3), rng)
    with pytest.raises(DataError, match="cropping 2\\+2 steps .* of 4 steps"):
        crop.forward(np.zeros((1, 4, 3), np.float32), False)
    for bad in ([1, 2, 3], [-1, 0], -1, [1.5, 1], True):
        with pytest.raises(ConfigError, match="cropping must be"):
            make("Cropping1D", cropping=bad)
    with pytest.raises(ConfigError, match="padding must be"):
        make("ZeroPadding1D", padding=[1])


@pytest.mark.parametrize("kind", ["ZeroPadding1D", "Cropping1D", "UpSampling1D", "Masking"])
def test_sequence_layers_want_rank_3(rng, kind):
    with pytest.raises(ConfigError, match="rank 3 \\(batch, steps, features\\)"):
        make(kind).build((4, 4, 3), rng)
    with pytest.raises(ConfigError, match="rank 3"):
        make(kind).build((4,), rng)


@pytest.mark.parametrize("size", [1, 2, 3])
def test_upsampling_1d(rng, size):
    x = rng.normal(size=(2, 4, 3))
    up = make("UpSampling1D", size=size)
    y = check_layer(up, x)
    np.testing.assert_array_equal(y, np.repeat(x, size, axis=1))
    assert up.output_shape == (4 * size, 3)
    assert make("UpSampling1D", size=size).build((None, 3), rng) == (None, 3)
    # backward sums the gradient of the repeats
    dy = rng.normal(size=y.shape)
    _, back = up.forward(x, True)
    np.testing.assert_allclose(back(dy), dy.reshape(2, 4, size, 3).sum(axis=2))
    with pytest.raises(ConfigError, match="size"):
        make("UpSampling1D", size=0)


def test_masking_values_gradients_and_mask(rng):
    x = rng.normal(size=(3, 5, 4))
    x[2, 2, :2] = 0.0  # only some features at the mask value: the step is kept
    layer = make("Masking")
    # gradients where no step is masked (at a masked step, the mask itself jumps)
    np.testing.assert_array_equal(check_layer(layer, x), x)
    x[0, 3:] = 0.0  # padded at the end
    x[1, 1] = 0.0  # a hole
    keep = np.any(x != 0.0, axis=-1)
    assert keep.sum() == 15 - 3
    y, back = layer.forward(x, True)
    np.testing.assert_array_equal(y, np.where(keep[..., None], x, 0))
    dy = rng.normal(size=x.shape)
    np.testing.assert_array_equal(back(dy), dy * keep[..., None])  # Keras: dy · mask
    np.testing.assert_array_equal(layer.compute_mask(x, None), keep)
    # another mask value; an incoming mask is replaced (as Keras), not combined
    x2 = np.where(x == 0, 7.5, x)
    other = make("Masking", mask_value=7.5)
    check_layer(other, np.where(keep[..., None], x2, 1.0))
    y2, back = other.forward(x2, True)
    np.testing.assert_array_equal(y2, np.where(keep[..., None], x2, 0))
    np.testing.assert_array_equal(back(dy), dy * keep[..., None])
    m = other.compute_mask(x2, np.ones((3, 5), bool))
    assert m.dtype == bool and m.shape == (3, 5)
    np.testing.assert_array_equal(m, np.any(x2 != 7.5, axis=-1))


def test_thresholded_relu(rng):
    x = rng.normal(size=(3, 4, 5)) * 2
    x[np.abs(x - 0.5) < 1e-3] = 0.0  # away from the kink at theta
    y = check_layer(make("ThresholdedReLU", theta=0.5), x)
    np.testing.assert_array_equal(y, np.where(x > 0.5, x, 0))
    y = check_layer(make("ThresholdedReLU", theta=0), np.where(np.abs(x) < 1e-3, 1.0, x))
    assert np.all(y >= 0)
    x = np.array([[-1.0, 0.0, 1.0, 1.5, 2.0]])
    y, _ = make("ThresholdedReLU").forward(x, False)  # theta 1: strictly greater
    np.testing.assert_array_equal(y, [[0, 0, 0, 1.5, 2.0]])
    with pytest.raises(ConfigError, match="'t' \\(ThresholdedReLU\\): theta must be .*-0.5"):
        make("ThresholdedReLU", theta=-0.5, name="t")
    with pytest.raises(ConfigError, match="theta"):
        layers.get({"ThresholdedReLU": -1})


def test_mask_decisions(rng):
    x = rng.normal(size=(2, 4, 3))
    mask = np.array([[False, True, True, True], [True, True, False, True]])
    assert make("ThresholdedReLU").compute_mask(x, mask) is mask
    for kind in ("ZeroPadding1D", "Cropping1D", "UpSampling1D"):  # the time axis changes
        assert make(kind).compute_mask(x, mask) is None, kind
    # in a graph: Embedding(mask_zero) → ThresholdedReLU → LSTM keeps the mask;
    # after ZeroPadding1D the LSTM runs on every step
    ids = np.array([[0, 0, 3, 4], [1, 2, 0, 3]])
    outs = {}
    for middle in ("ThresholdedReLU", "ZeroPadding1D"):
        emb = layers.get({"Embedding": {"input_dim": 6, "output_dim": 3, "mask_zero": True}})
        lstm = layers.get({"LSTM": {"units": 2, "return_sequences": True}})
        graph = Graph(["tokens"], [(4,)])
        t = graph.add(emb, [0], np.random.default_rng(0))
        t = graph.add(make(middle, **({"theta": 0.0} if middle == "ThresholdedReLU" else {})),
                      [t], np.random.default_rng(0))
        graph.outputs = [graph.add(lstm, [t], np.random.default_rng(0))]
        (outs[middle],) = graph.forward([ids], training=False)
    masked = outs["ThresholdedReLU"]
    np.testing.assert_array_equal(masked[0, :2], 0)  # pre-padding: the zero state
    np.testing.assert_array_equal(masked[1, 2], masked[1, 1])  # a hole repeats
    padded = outs["ZeroPadding1D"]
    assert padded.shape == (2, 6, 2) and not np.allclose(padded[1, 3], padded[1, 2])


def _masking_lstm(tmp_path, steps, features, mask_value=0.0, masking=True):
    head = [{"Masking": {"mask_value": mask_value}}] if masking else []
    cfg = from_dict({
        "seed": 0,
        "data": {"train": {"path": "unused.npz", "x": "x", "y": "y"}},
        "model": {"input_shape": [steps, features], "layers": head + [
            {"LSTM": {"units": 4}}, {"Dense": {"units": 2}}]},
        "compile": {"loss": "mse"},
    }, tmp_path / "config.yaml")
    return api.build(cfg)


def test_masking_lstm_skips_padded_steps_end_to_end(tmp_path, rng):
    T, F, n = 4, 3, 3
    x = rng.normal(size=(2, T, F)).astype(np.float32)
    padded = np.concatenate([x, np.zeros((2, n, F), np.float32)], axis=1)
    short = _masking_lstm(tmp_path, T, F)
    long = _masking_lstm(tmp_path, T + n, F)
    for a, b in zip(long.layers, short.layers):
        a.set_weights(b.get_weights())
    (alone,) = short.predict_on_batch([x])
    (with_padding,) = long.predict_on_batch([padded])
    np.testing.assert_allclose(with_padding, alone, rtol=1e-5, atol=1e-6)
    # the LSTM's own output, too: masked steps carry the state through
    lstm_short = short.layers[1].forward(short.layers[0].forward(x, False)[0], False)[0]
    masking = long.layers[0]
    mask = masking.compute_mask(padded, None)
    np.testing.assert_array_equal(mask, np.any(padded != 0.0, axis=-1))
    assert mask[:, T:].sum() == 0 and mask[:, :T].all()
    lstm_long = long.layers[1].forward(masking.forward(padded, False)[0], False,
                                       mask=mask)[0]
    np.testing.assert_allclose(lstm_long, lstm_short, rtol=1e-5, atol=1e-6)
    # without Masking the zero steps do change the output
    plain = _masking_lstm(tmp_path, T + n, F, masking=False)
    for a, b in zip(plain.layers, short.layers[1:]):
        a.set_weights(b.get_weights())
    (unmasked,) = plain.predict_on_batch([padded])
    assert not np.allclose(unmasked, alone, atol=1e-4)


def test_masking_with_another_mask_value_end_to_end(tmp_path, rng):
    T, F = 5, 2
    x = rng.normal(size=(2, T, F)).astype(np.float32)
    padded = np.concatenate([x, np.full((2, 2, F), -1.0, np.float32)], axis=1)
    short = _masking_lstm(tmp_path, T, F, mask_value=-1.0)
    long = _masking_lstm(tmp_path, T + 2, F, mask_value=-1.0)
    for a, b in zip(long.layers, short.layers):
        a.set_weights(b.get_weights())
    np.testing.assert_allclose(long.predict_on_batch([padded])[0],
                               short.predict_on_batch([x])[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(long.layers[0].compute_mask(padded, None),
                                  np.any(padded != -1.0, axis=-1))


def test_sequence_layers_train_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    n, T, F = 96, 12, 2
    y = rng.integers(0, 2, n)
    x = rng.normal(scale=0.3, size=(n, T, F)).astype(np.float32)
    x[np.arange(n), rng.integers(2, T - 2, n), 0] += np.where(y == 1, 2.0, -2.0)
    np.savez(tmp_path / "seq.npz", x=x, y=y)
    cfg = from_dict({
        "name": "seq", "seed": 0,
        "data": {"train": {"path": "seq.npz", "x": "x", "y": "y"}},
        "model": {"input_shape": [T, F], "layers": [
            {"Masking": {"mask_value": 0.0}},
            {"Conv1D": {"filters": 4, "kernel_size": 3, "activation": "tanh"}},
            {"ThresholdedReLU": {"theta": 0.1}},
            {"UpSampling1D": {"size": 2}},
            {"Cropping1D": {"cropping": [1, 2]}},
            {"ZeroPadding1D": {"padding": [2, 1]}},
            "GlobalMaxPooling1D",
            {"Dense": {"units": 2, "activation": "softmax"}}]},
        "compile": {"loss": "sparse_categorical_crossentropy",
                    "optimizer": {"Adam": {"lr": 0.01}}, "metrics": ["accuracy"]},
        "fit": {"epochs": 2, "batch_size": 16, "verbose": 0},
    }, tmp_path / "config.yaml")
    run, logs = api.fit(cfg, run_dir=tmp_path / "run", verbose=0)
    assert np.isfinite(logs["loss"]) and logs["accuracy"] > 0.75  # it learns (0.99)
    model = api.build(cfg)
    shapes = [la.output_shape for la in model.layers]
    assert shapes[:6] == [(T, F), (T - 2, 4), (T - 2, 4), (2 * (T - 2), 4),
                          (2 * (T - 2) - 3, 4), (2 * (T - 2), 4)]
