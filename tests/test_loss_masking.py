"""Masked losses and metrics, as Keras: an output of shape (N, T, ...) carrying a mask
(N, T) — from Embedding(mask_zero) or Masking, through layers that pass it — counts
only its unmasked timesteps: loss = Σ l·w·m / Σ m, metrics weighted by the mask."""

from pathlib import Path

import numpy as np
import pytest

from trainer.build.builder import build_model
from trainer.config.loader import from_dict
from trainer.engine.kernels import parallel

T, VOCAB, CLASSES = 6, 7, 4


def _model(loss="sparse_categorical_crossentropy", metrics=("accuracy",), head="softmax",
           weighted=()):
    layers = [{"Embedding": {"input_dim": VOCAB, "output_dim": 3, "mask_zero": True}},
              {"LSTM": {"units": 5, "return_sequences": True}},
              {"TimeDistributed": {"layer": {"Dense": {"units": CLASSES,
                                                        "activation": head}}}}]
    cfg = from_dict({"data": {"train": {"dataset": "iris"}},
                     "model": {"input_shape": [T], "layers": layers},
                     "compile": {"loss": loss, "optimizer": {"SGD": {"lr": 0.5}},
                                 "metrics": list(metrics),
                                 "weighted_metrics": list(weighted)}}, Path("t.yaml"))
    return build_model(cfg)


def _batch(rng, n=5):
    ids = rng.integers(1, VOCAB, (n, T)).astype(np.int32)
    lengths = np.array([T, 1, 3, 0, 4][:n])
    for row, k in enumerate(lengths):
        ids[row, k:] = 0  # padding after each sequence
    labels = rng.integers(0, CLASSES, (n, T))
    return ids, labels, ids != 0


def _crossentropy(p, labels):
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return -np.log(np.take_along_axis(p, labels[..., None], -1)[..., 0])


@pytest.mark.parametrize("weights", [None, [1.0, 2.0, 0.5, 3.0, 0.0]])
def test_the_loss_averages_over_unmasked_timesteps(weights):
    rng = np.random.default_rng(0)
    model = _model()
    ids, labels, mask = _batch(rng)
    sw = None if weights is None else np.array(weights)
    p, masks, _ = model.predict_on_batch([ids], for_loss=True)
    np.testing.assert_array_equal(masks[0], mask)
    w = mask * (1.0 if sw is None else sw[:, None])
    want = float((_crossentropy(p[0], labels) * w).sum() / mask.sum())
    total, _ = model.test_on_batch([ids], [labels], sw)
    assert total == pytest.approx(want, rel=1e-6)
    # labels under the mask do not count
    other = labels.copy()
    other[~mask] = (other[~mask] + 1) % CLASSES
    assert model.test_on_batch([ids], [other], sw)[0] == total


def test_accuracy_counts_unmasked_timesteps_only():
    rng = np.random.default_rng(1)
    model = _model(metrics=("accuracy",), weighted=("accuracy",))
    ids, labels, mask = _batch(rng)
    sw = np.array([1.0, 2.0, 0.5, 3.0, 0.0])
    p = model.predict_on_batch([ids])[0]
    hit = (p.argmax(-1) == labels).astype(np.float64)
    model.reset_metrics()
    model.test_on_batch([ids], [labels], sw)
    results = model.metric_results()
    assert results["accuracy"] == pytest.approx((hit * mask).sum() / mask.sum())
    w = mask * sw[:, None]
    assert results["weighted_accuracy"] == pytest.approx((hit * w).sum() / w.sum())


@pytest.mark.parametrize("loss,head", [("sparse_categorical_crossentropy", "softmax"),
                                       ("mse", "sigmoid")])
def test_labels_under_the_mask_do_not_change_training(loss, head):
    """Padded timesteps carry no gradient: changing their labels changes nothing."""
    rng = np.random.default_rng(2)
    ids, labels, mask = _batch(rng)
    if loss == "mse":
        labels = rng.random((len(ids), T, CLASSES))
    other = labels.copy()
    other[~mask] = (other[~mask] + 1) % CLASSES if loss != "mse" else 5.0
    runs = []
    for y in (labels, other):
        model = _model(loss=loss, head=head, metrics=())
        for _ in range(3):
            total, _ = model.train_on_batch([ids], [y])
        runs.append((total, model.get_weights()))
    assert runs[0][0] == runs[1][0]
    for name, weights in runs[0][1].items():
        for a, b in zip(weights, runs[1][1][name]):
            np.testing.assert_array_equal(a, b)
    # and labels that are not masked do change it
    changed = labels.copy()
    changed[mask] = (changed[mask] + 1) % CLASSES if loss != "mse" else 5.0
    model = _model(loss=loss, head=head, metrics=())
    for _ in range(3):
        model.train_on_batch([ids], [changed])
    assert any(not np.array_equal(a, b) for name, ws in model.get_weights().items()
               for a, b in zip(ws, runs[0][1][name]))


@pytest.mark.parametrize("fused", [True, False])
def test_masked_loss_gradient_matches_finite_differences(fused):
    """The masked loss's gradient wrt the predictions (or, fused, the softmax's
    input), against central differences of its value, float64."""
    from trainer.build.model import Model

    rng = np.random.default_rng(3)
    model = _model()
    out = model.outputs[0]
    _, labels, mask = _batch(rng)
    sw = np.array([1.0, 2.0, 0.5, 3.0, 1.5])
    z = rng.normal(size=(len(labels), T, CLASSES))

    def softmax(v):
        e = np.exp(v - v.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    if fused:
        value = lambda v: Model._masked_loss(out, labels, softmax(v), sw, mask, True)[0]  # noqa: E731
        grad = Model._masked_loss(out, labels, softmax(z), sw, mask, True)[1]
    else:
        z = softmax(z)
        value = lambda v: Model._masked_loss(out, labels, v, sw, mask, False)[0]  # noqa: E731
        grad = Model._masked_loss(out, labels, z, sw, mask, False)[1]
    numeric = np.zeros_like(z)
    eps = 1e-6
    for i in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[i] += eps
        down[i] -= eps
        numeric[i] = (value(up) - value(down)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)
    assert not grad[~mask].any()


def test_all_masked_batch_has_zero_loss_and_no_update():
    model = _model(metrics=())
    ids = np.zeros((3, T), np.int32)
    labels = np.ones((3, T), np.int64)
    before = model.get_weights()
    total, _ = model.train_on_batch([ids], [labels])
    assert total == 0.0
    for name, ws in model.get_weights().items():
        for a, b in zip(ws, before[name]):
            np.testing.assert_array_equal(a, b)


def test_inference_split_over_threads_keeps_the_masks(monkeypatch):
    rng = np.random.default_rng(4)
    model = _model()
    ids, labels, mask = _batch(rng)
    ids = np.concatenate([ids] * 40)
    before = parallel.num_threads()
    try:
        parallel.set_num_threads(1)
        one = model.predict_on_batch([ids], for_loss=True)
        parallel.set_num_threads(2)
        monkeypatch.setattr(type(model), "PREDICT_MIN_ROWS", 16)
        two = model.predict_on_batch([ids], for_loss=True)
    finally:
        parallel.set_num_threads(before)
    np.testing.assert_array_equal(one[1][0], two[1][0])
    np.testing.assert_array_equal(one[1][0], np.concatenate([mask] * 40))
    np.testing.assert_allclose(one[0][0], two[0][0], rtol=1e-6)


# -- per-timestep sample weights (Keras's temporal sample weights) ---------------------

def _plain_sequence_model(metrics=(), weighted=()):
    layers = [{"LSTM": {"units": 5, "return_sequences": True}},
              {"Dense": {"units": CLASSES, "activation": "softmax"}}]
    cfg = from_dict({"data": {"train": {"dataset": "iris"}},
                     "model": {"input_shape": [T, 3], "layers": layers},
                     "compile": {"loss": "sparse_categorical_crossentropy",
                                 "optimizer": "sgd", "metrics": list(metrics),
                                 "weighted_metrics": list(weighted)}}, Path("t.yaml"))
    return build_model(cfg)


def test_timestep_weights_without_a_mask_average_over_all_timesteps():
    rng = np.random.default_rng(6)
    model = _plain_sequence_model(weighted=("accuracy",))
    x = rng.normal(size=(5, T, 3)).astype(np.float32)
    labels = rng.integers(0, CLASSES, (5, T))
    sw = rng.random((5, T))
    p = model.predict_on_batch([x])[0]
    model.reset_metrics()
    total, _ = model.test_on_batch([x], [labels], sw)
    assert total == pytest.approx(float((_crossentropy(p, labels) * sw).sum() / sw.size),
                                  rel=1e-6)
    hit = (p.argmax(-1) == labels)
    assert model.metric_results()["weighted_accuracy"] == pytest.approx(
        (hit * sw).sum() / sw.sum())


def test_timestep_weights_with_a_mask():
    rng = np.random.default_rng(7)
    model = _model()
    ids, labels, mask = _batch(rng)
    sw = rng.random(mask.shape)
    p = model.predict_on_batch([ids])[0]
    total, _ = model.test_on_batch([ids], [labels], sw)
    want = (_crossentropy(p, labels) * sw * mask).sum() / mask.sum()
    assert total == pytest.approx(float(want), rel=1e-6)


def test_timestep_weights_through_the_cli_and_their_errors(tmp_path):
    from data_helpers import cli

    rng = np.random.default_rng(8)
    x = rng.integers(1, VOCAB, (40, T))
    x[::3, 3:] = 0
    np.savez(tmp_path / "d.npz", x=x, y=rng.integers(0, CLASSES, (40, T)),
             y1=rng.integers(0, CLASSES, 40), sw=rng.random((40, T)),
             sw3=rng.random((40, T, 2)))
    base = """
data:
  train: {{path: d.npz, x: x, y: {y}, sample_weight: {sw}}}
model:
  input_shape: [{t}]
  layers:
    - Embedding: {{input_dim: {v}, output_dim: 4, mask_zero: true}}
    - LSTM: {{units: 4, return_sequences: {seq}}}
    - Dense: {{units: {c}, activation: softmax}}
compile: {{loss: sparse_categorical_crossentropy, optimizer: adam}}
fit: {{epochs: 1, batch_size: 8}}
"""
    def run(sw, seq="true"):
        (tmp_path / "c.yaml").write_text(base.format(sw=sw, t=T, v=VOCAB, c=CLASSES,
                                                     seq=seq, y="y" if seq == "true" else "y1"))
        return cli("fit", tmp_path / "c.yaml", "--run-dir", tmp_path / f"r_{sw}_{seq}",
                   "-q")

    assert run("sw").exit_code == 0
    r = run("sw3")
    assert r.exit_code == 3 and "sample_weight has shape (40, 6, 2)" in r.output, r.output
    r = run("sw", seq="false")  # one label per sample, weights per timestep
    assert r.exit_code == 3 and "weighs timesteps" in r.output, r.output
    assert "per-timestep weights need a sequence output" in r.output
