"""Every loss: values against hand-computed Keras 2 formulas, gradients by finite
differences (float64, away from clip edges and kinks), names, config round trips, and
the label checks that stop a run before training (through the CLI, exit 3)."""

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT, write_config
from gradcheck import check_loss
from trainer.cli import main
from trainer.config.families import losses
from trainer.config.registry import config_of

EPS = 1e-7
LN2 = np.log(2.0)


def value(spec, y_true, y_pred):
    return losses.get(spec)(np.asarray(y_true, float), np.asarray(y_pred, float))


# -- values -----------------------------------------------------------------

def test_mean_absolute_error():
    # (|1.5-1| + |2-2|)/2, (|2-3| + |5-4|)/2
    assert value("mae", [[1, 2], [3, 4]], [[1.5, 2], [2, 5]]) == pytest.approx([0.25, 1.0])


def test_mean_absolute_percentage_error_divides_by_clipped_truth():
    v = value("mape", [[2, -4], [0, 1]], [[1, -5], [0.5, 1.5]])
    # 100·mean(1/2, 1/4) ; 100·mean(0.5/1e-7, 0.5/1)
    assert v == pytest.approx([37.5, 100 * (0.5 / EPS + 0.5) / 2])


def test_mean_squared_logarithmic_error_clips_below_at_eps():
    v = value("msle", [[0.0, 3.0]], [[1.0, -1.0]])
    small = np.log1p(EPS)  # both 0 (true) and -1 (pred) are clipped up to 1e-7
    assert v == pytest.approx([((LN2 - small) ** 2 + (small - np.log(4)) ** 2) / 2])


def test_logcosh_is_stable_for_large_errors():
    v = value("logcosh", [[0.0, 0.0], [0.0, 0.0]], [[1.0, -2.0], [1000.0, -1000.0]])
    expected = (np.log(np.cosh(1.0)) + np.log(np.cosh(2.0))) / 2
    assert v == pytest.approx([expected, 1000 - LN2])


@pytest.mark.parametrize("labels", [[[1, -1]], [[1, 0]]])
def test_hinge_takes_01_labels_as_minus1_plus1(labels):
    # max(1 - 0.3, 0) = 0.7 ; max(1 + 0.5, 0) = 1.5
    assert value("hinge", labels, [[0.3, 0.5]]) == pytest.approx([1.1])
    assert value("squared_hinge", labels, [[0.3, 0.5]]) == pytest.approx([(0.49 + 2.25) / 2])
    assert value("hinge", [[1]], [[2.0]]) == pytest.approx([0.0])


def test_categorical_hinge():
    v = value("categorical_hinge", [[0, 1, 0], [1, 0, 0]], [[0.3, 0.5, 0.2], [3, 0.5, 0.1]])
    # max(0.3 - 0.5 + 1, 0) ; max(0.5 - 3 + 1, 0)
    assert v == pytest.approx([0.8, 0.0])


def test_binary_crossentropy_clip_logits_and_smoothing():
    # tf.keras 2: clip to [ε, 1-ε], then log(p + ε) and log(1 - p + ε)
    assert value("bce", [[1], [0]], [[1.0], [1.0]]) == pytest.approx(
        [-np.log(1 - EPS + EPS), -np.log(2 * EPS)], rel=1e-6, abs=1e-12)
    logits = value({"binary_crossentropy": {"from_logits": True}}, [[1], [0]], [[2.0], [-1.0]])
    assert logits == pytest.approx([np.log1p(np.exp(-2.0)), np.log1p(np.exp(-1.0))])
    smooth = value({"binary_crossentropy": {"label_smoothing": 0.2}}, [[1]], [[0.8]])
    assert smooth == pytest.approx([-(0.9 * np.log(0.8) + 0.1 * np.log(0.2))])


def test_binary_crossentropy_adds_epsilon_inside_the_logs_as_tf_keras_2():
    """tf.keras 2's backend: -(t·log(p + ε) + (1 - t)·log(1 - p + ε)), p clipped to
    [ε, 1 - ε]; predictions of exactly 0 and 1 show the ``+ ε``."""
    t = np.array([[1.0, 0.0, 1.0, 0.0, 0.3]])
    p = np.array([[0.0, 1.0, 1.0, 0.0, 0.6]])
    q = np.clip(p, EPS, 1 - EPS)
    hand = -(t * np.log(q + EPS) + (1 - t) * np.log(1 - q + EPS)).mean()
    assert value("bce", t, p) == pytest.approx([hand], rel=1e-12)
    assert value("bce", [[1.0]], [[0.0]]) == pytest.approx([-np.log(2 * EPS)], rel=1e-9)
    # the gradient of that formula inside the clip: (1-t)/(1-p+ε) - t/(p+ε)
    p = np.array([[1e-4, 0.5, 1 - 1e-4]])
    t = np.array([[1.0, 0.3, 0.0]])
    g = losses.get("bce").gradient(t, p)
    np.testing.assert_allclose(g, ((1 - t) / (1 - p + EPS) - t / (p + EPS)) / 3, rtol=1e-12)


def test_sparse_categorical_crossentropy_clips_then_normalises_as_tf_keras_2():
    """tf.keras 2: q = clip(p, ε, 1-ε), then -log_softmax(log q)[t] = -log(q_t / Σq);
    on rows that do not sum to 1 or hold a 0 this differs from normalising first."""
    p = np.array([[0.0, 0.3, 0.3], [0.2, 0.2, 0.2], [1.0, 0.0, 0.0]])
    ids = np.array([0, 1, 0])
    q = np.clip(p, EPS, 1 - EPS)
    hand = -np.log(q[np.arange(3), ids] / q.sum(axis=1))
    assert value("sparse_categorical_crossentropy", ids, p) == pytest.approx(hand, rel=1e-12)
    # categorical_crossentropy is tf.keras 2's other order: normalise, then clip
    r = p / p.sum(axis=1, keepdims=True)
    dense = -np.log(np.clip(r, EPS, 1 - EPS)[np.arange(3), ids])
    assert value("cce", np.eye(3)[ids], p) == pytest.approx(dense, rel=1e-12)
    assert hand[0] != pytest.approx(dense[0], rel=1e-3)  # the orders differ here


def test_binary_crossentropy_takes_flat_labels_for_one_unit():
    assert value("bce", [1, 0], [[0.8], [0.3]]) == pytest.approx([-np.log(0.8), -np.log(0.7)])


def test_categorical_crossentropy_normalises_logits_and_smoothing():
    assert value("cce", [[0, 0, 1]], [[1.0, 1.0, 2.0]]) == pytest.approx([LN2])  # p=.25,.25,.5
    e = np.exp([1.0, 2.0, 3.0])
    logits = value({"cce": {"from_logits": True}}, [[0, 0, 1]], [[1.0, 2.0, 3.0]])
    assert logits == pytest.approx([-np.log(e[2] / e.sum())])
    smooth = value({"categorical_crossentropy": {"label_smoothing": 0.3}}, [[0, 0, 1]],
                   [[0.2, 0.3, 0.5]])  # t = 0.1, 0.1, 0.8
    assert smooth == pytest.approx([-(0.1 * np.log(0.2) + 0.1 * np.log(0.3) + 0.8 * np.log(0.5))])


def test_categorical_crossentropy_averages_timesteps():
    t = np.array([[[0, 1], [1, 0]]], float)
    p = np.array([[[0.5, 0.5], [0.8, 0.2]]])
    assert value("cce", t, p) == pytest.approx([(LN2 - np.log(0.8)) / 2])
    assert value("sparse_categorical_crossentropy", [[1, 0]], p) == pytest.approx(
        [(LN2 - np.log(0.8)) / 2])


def test_sparse_from_logits_matches_dense(rng):
    z = rng.normal(size=(5, 4))
    ids = np.array([0, 3, 1, 2, 2])
    sparse = losses.get({"sparse_categorical_crossentropy": {"from_logits": True}})
    dense = losses.get({"categorical_crossentropy": {"from_logits": True}})
    np.testing.assert_allclose(sparse(ids[:, None], z), dense(np.eye(4)[ids], z))


def test_kullback_leibler_divergence_clips_both():
    assert value("kld", [[0.5, 0.5]], [[0.25, 0.75]]) == pytest.approx(
        [0.5 * np.log(2) + 0.5 * np.log(0.5 / 0.75)])
    # t = (1, 1e-7), p = (0.5, 0.5)
    assert value("kullback_leibler_divergence", [[1, 0]], [[0.5, 0.5]]) == pytest.approx(
        [LN2 + EPS * np.log(EPS / 0.5)])


def test_huber_is_quadratic_then_linear():
    """tf.keras Huber: 0.5·x² for |x| ≤ delta, delta·|x| - 0.5·delta² beyond."""
    assert value("huber", [[0.0, 0.0]], [[0.5, -3.0]]) == pytest.approx(
        [(0.125 + 2.5) / 2])
    assert value({"huber": {"delta": 2.0}}, [[1.0]], [[4.0]]) == pytest.approx([4.0])


def test_poisson():
    assert value("poisson", [[2, 0]], [[1, 3]]) == pytest.approx(
        [(1 - 2 * np.log(1 + EPS) + 3) / 2])


def test_cosine_proximity_is_negative_for_aligned_vectors():
    v = value("cosine_proximity", [[1, 0], [1, 0], [1, 1], [1, 0]],
              [[2, 0], [0, 1], [1, 0], [-3, 0]])
    assert v == pytest.approx([-1.0, 0.0, -1 / np.sqrt(2), 1.0])


# -- gradients ----------------------------------------------------------------

def _probabilities(rng, n, k):
    return rng.dirichlet(np.ones(k) * 4, size=n)


def _away_from(rng, t, gap, scale=1.0):
    """Predictions at least ``gap`` away from the labels (|p - t| kink)."""
    step = rng.uniform(gap, 1.0, size=t.shape) * scale
    return t + np.where(rng.random(t.shape) < 0.5, -step, step)


GRADIENT_CASES = {
    "mse": lambda r: (r.normal(size=(4, 3)), r.normal(size=(4, 3))),
    "mae": lambda r: (lambda t: (t, _away_from(r, t, 0.1)))(r.normal(size=(4, 3))),
    "mape": lambda r: (lambda t: (t, _away_from(r, t, 0.1)))(r.uniform(0.5, 2, size=(4, 3))),
    "msle": lambda r: (r.uniform(0, 3, size=(4, 3)), r.uniform(0.1, 3, size=(4, 3))),
    "logcosh": lambda r: (r.normal(size=(4, 3)), r.normal(size=(4, 3)) * 2),
    "hinge": lambda r: (r.choice([-1.0, 1.0], size=(4, 3)),
                        r.choice([-1, 1], size=(4, 3)) * r.uniform(0.1, 0.8, size=(4, 3))),
    "squared_hinge": lambda r: (r.integers(0, 2, size=(4, 3)).astype(float),
                                r.normal(size=(4, 3)) * 2),
    "categorical_hinge": lambda r: (np.eye(4)[[0, 3, 1, 2]],
                                    np.array([[0.9, 0.2, 0.1, 0.3], [0.2, 0.6, 0.1, 0.5],
                                              [0.1, 0.4, 0.7, 0.2], [0.3, 0.1, 2.0, 0.2]])),
    "binary_crossentropy": lambda r: (r.integers(0, 2, size=(4, 2)).astype(float),
                                      r.uniform(0.1, 0.9, size=(4, 2))),
    "bce_logits_smooth": lambda r: (r.integers(0, 2, size=(4, 2)).astype(float),
                                    r.normal(size=(4, 2)) * 3),
    "categorical_crossentropy": lambda r: (np.eye(3)[[0, 2, 1, 1]], _probabilities(r, 4, 3)),
    "cce_unnormalised": lambda r: (np.eye(3)[[0, 2, 1, 1]], r.uniform(0.2, 2, size=(4, 3))),
    "cce_logits_smooth": lambda r: (np.eye(3)[[0, 2, 1, 1]], r.normal(size=(4, 3))),
    "cce_timesteps": lambda r: (np.eye(3)[[[0, 2], [1, 1]]],
                                _probabilities(r, 4, 3).reshape(2, 2, 3)),
    "sparse_categorical_crossentropy": lambda r: (np.array([1, 0, 2]),
                                                  _probabilities(r, 3, 3)),
    "scce_unnormalised": lambda r: (np.array([1, 0, 2, 2]), r.uniform(0.05, 0.9, size=(4, 3))),
    "scce_timesteps": lambda r: (np.array([[1, 0], [2, 2]]),
                                 r.uniform(0.05, 0.9, size=(2, 2, 3))),
    "bce_near_edges": lambda r: (r.uniform(0, 1, size=(4, 2)),
                                 r.choice([2e-3, 1 - 2e-3, 0.5], size=(4, 2))),
    "scce_logits": lambda r: (np.array([[1], [0], [2]]), r.normal(size=(3, 3))),
    "kld": lambda r: (_probabilities(r, 4, 3), _probabilities(r, 4, 3)),
    "poisson": lambda r: (r.poisson(2, size=(4, 3)).astype(float),
                          r.uniform(0.2, 3, size=(4, 3))),
    "cosine_proximity": lambda r: (r.normal(size=(4, 3)), r.normal(size=(4, 3))),
    # both sides of delta, away from the kink at |x| = delta
    "huber": lambda r: (lambda t: (t, t + np.array([[0.3, -0.2, 2.0], [-1.7, 0.5, 3.0],
                                                    [0.1, -0.6, -2.5], [1.4, 0.0, 0.8]])))(
        r.normal(size=(4, 3))),
}
SPECS = {
    "bce_logits_smooth": {"binary_crossentropy": {"from_logits": True, "label_smoothing": 0.1}},
    "cce_unnormalised": "categorical_crossentropy",
    "cce_logits_smooth": {"categorical_crossentropy": {"from_logits": True,
                                                        "label_smoothing": 0.2}},
    "cce_timesteps": "categorical_crossentropy",
    "scce_logits": {"sparse_categorical_crossentropy": {"from_logits": True}},
    "scce_unnormalised": "sparse_categorical_crossentropy",
    "scce_timesteps": "sparse_categorical_crossentropy",
    "bce_near_edges": "binary_crossentropy",
}


@pytest.mark.parametrize("case", sorted(GRADIENT_CASES))
def test_gradient(case):
    y_true, y_pred = GRADIENT_CASES[case](np.random.default_rng(3))
    check_loss(losses.get(SPECS.get(case, case)), y_true, y_pred)


def test_clipped_predictions_have_no_gradient():
    g = losses.get("bce").gradient(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]))
    np.testing.assert_array_equal(g, 0)
    g = losses.get("msle").gradient(np.array([[1.0]]), np.array([[-0.5]]))
    np.testing.assert_array_equal(g, 0)
    g = losses.get("scce").gradient(np.array([0, 1]), np.array([[1.0, 0.0], [1.0, 0.0]]))
    np.testing.assert_array_equal(g, 0)


# -- names and configs --------------------------------------------------------

ALIASES = {
    "mean_squared_error": ["mse", "MeanSquaredError"],
    "mean_absolute_error": ["mae", "MeanAbsoluteError"],
    "mean_absolute_percentage_error": ["mape", "MeanAbsolutePercentageError"],
    "mean_squared_logarithmic_error": ["msle", "MeanSquaredLogarithmicError"],
    "squared_hinge": ["SquaredHinge"], "hinge": ["Hinge"],
    "categorical_hinge": ["CategoricalHinge"],
    "binary_crossentropy": ["BinaryCrossentropy"], "logcosh": ["LogCosh"],
    "categorical_crossentropy": ["CategoricalCrossentropy"],
    "sparse_categorical_crossentropy": ["SparseCategoricalCrossentropy"],
    "kullback_leibler_divergence": ["kld", "KLDivergence"], "poisson": ["Poisson"],
    "cosine_proximity": ["CosineSimilarity", "cosine"],
    "huber": ["huber_loss", "Huber"],  # tf.keras's, beyond Keras 2's fourteen
}


def test_all_losses_and_their_aliases():
    assert sorted(losses.names()) == sorted(ALIASES)
    for name, aliases in ALIASES.items():
        for alias in aliases:
            assert losses.canonical(alias) == name


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_loss_config_round_trip(name):
    loss = losses.get(name)
    config = config_of(loss)
    assert config_of(losses.get(config)) == config


def test_loss_arguments_round_trip():
    spec = {"categorical_crossentropy": {"from_logits": True, "label_smoothing": 0.1}}
    assert config_of(losses.get(spec)) == spec


# -- labels that do not fit: through the CLI, exit 3 ----------------------------

QUICK = (ROOT / "configs" / "quickstart.yaml").read_text()
TO_CATEGORICAL = "    y: [{to_categorical: {num_classes: 10}}]\n"


def fit_fails(workdir, text):
    # without the quickstart's gate: one on a metric these configs drop is refused
    # (exit 2) before the labels are read
    text = text[:text.index("expect:")]
    r = CliRunner().invoke(main, ["fit", str(write_config(workdir, text)),
                                  "--run-dir", str(workdir / "r")])
    assert r.exit_code == 3, r.output
    assert "Traceback" not in r.output
    return " ".join(r.output.split())


def test_one_hot_width_differs_from_units(workdir):
    out = fit_fails(workdir, QUICK.replace("num_classes: 10", "num_classes: 12"))
    assert "output 'dense_1' has shape (None, 10)" in out
    assert "the labels have shape (1438, 12)" in out
    assert "num_classes to 10" in out


def test_integer_labels_for_categorical_crossentropy(workdir):
    out = fit_fails(workdir, QUICK.replace(TO_CATEGORICAL, ""))
    assert "(None, 10)" in out and "(1438,)" in out
    assert "to_categorical" in out and "sparse_categorical_crossentropy" in out


def test_class_id_out_of_range(workdir):
    text = QUICK.replace(TO_CATEGORICAL, "").replace(
        "loss: categorical_crossentropy", "loss: sparse_categorical_crossentropy").replace(
        "Dense: {units: 10, activation: softmax}", "Dense: {units: 8, activation: softmax}")
    out = fit_fails(workdir, text)
    assert "(None, 8) (8 classes)" in out and "(1438,)" in out
    assert "class ids in [0, 9]" in out and "at least 10" in out


def test_one_hot_labels_for_sparse_loss(workdir):
    text = QUICK.replace("loss: categorical_crossentropy",
                         "loss: sparse_categorical_crossentropy")
    out = fit_fails(workdir, text)
    assert "(None, 10)" in out and "(1438, 10)" in out and "one-hot" in out


def test_wrong_rank_for_hinge(workdir):
    text = QUICK.replace(TO_CATEGORICAL, "").replace(
        "loss: categorical_crossentropy", "loss: hinge").replace("metrics: [accuracy]",
                                                                  "metrics: []")
    out = fit_fails(workdir, text)
    assert "output 'dense_1' has shape (None, 10) but the labels have shape (1438,)" in out
    assert "loss hinge wants labels of shape (N, 10)" in out


def test_class_ids_for_binary_crossentropy(workdir):
    text = QUICK.replace(TO_CATEGORICAL, "").replace(
        "loss: categorical_crossentropy", "loss: binary_crossentropy").replace(
        "Dense: {units: 10, activation: softmax}", "Dense: {units: 1, activation: sigmoid}")
    out = fit_fails(workdir, text)
    assert "loss binary_crossentropy wants labels in [0, 1]" in out
    assert "(1438,)" in out and "(None, 1)" in out and "values in [0, 9]" in out


def test_metric_labels_are_checked_too(workdir):
    text = QUICK.replace("metrics: [accuracy]", "metrics: [sparse_categorical_accuracy]")
    out = fit_fails(workdir, text)
    assert "metric sparse_categorical_accuracy" in out and "(1438, 10)" in out


def test_categorical_crossentropy_over_one_unit(workdir):
    text = QUICK.replace(TO_CATEGORICAL, "").replace(
        "Dense: {units: 10, activation: softmax}", "Dense: {units: 1, activation: softmax}")
    out = fit_fails(workdir, text.replace("metrics: [accuracy]", "metrics: []"))
    assert "output 'dense_1' has shape (None, 1)" in out and "(1438,)" in out
    assert "loss categorical_crossentropy over a single unit" in out
    assert "binary_crossentropy" in out
