"""Metrics: values on ties and edge cases, accuracy resolution, AUC against hand-computed
areas, accumulator state, and the exact epoch value through the evaluation loop."""

from pathlib import Path

import numpy as np
import pytest

from trainer.config import loader as config_lib
from trainer import metrics as metric_lib
from trainer.app.fit import build
from trainer.data.pipeline import Split
from trainer.metrics.accuracy import BinaryAccuracy, CategoricalAccuracy, \
    SparseCategoricalAccuracy, resolve_accuracy
from trainer.metrics.base import LossMetric
from trainer.config.families import losses, metrics
from trainer.config.registry import config_of
from trainer.training.loop import evaluate


def measure(spec, y_true, y_pred, sample_weight=None):
    m = metric_lib.get(spec)
    m.update(np.asarray(y_true, float), np.asarray(y_pred, float), sample_weight)
    return m.result()


# -- accuracies -----------------------------------------------------------------

def test_binary_accuracy_threshold_is_strict():
    # 0.5 is class 0: right for row 1, wrong for row 3
    assert measure("binary_accuracy", [[1], [0], [0], [1]], [[0.7], [0.5], [0.2], [0.5]]) \
        == pytest.approx(0.75)
    assert measure({"binary_accuracy": {"threshold": 0.4}}, [[1]], [[0.45]]) == 1.0


def test_categorical_accuracy_ties_go_to_the_first_class():
    assert measure("categorical_accuracy", [[1, 0, 0], [0, 1, 0]],
                   [[0.4, 0.4, 0.2], [0.4, 0.4, 0.2]]) == pytest.approx(0.5)


def test_sparse_categorical_accuracy_takes_n_or_n1_labels():
    p = [[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]
    assert measure("sparse_categorical_accuracy", [1, 1, 1], p) == pytest.approx(2 / 3)
    assert measure("sparse_categorical_accuracy", [[1], [1], [1]], p) == pytest.approx(2 / 3)


def test_top_k_counts_every_class_tied_with_the_kth():
    p = [[0.1, 0.3, 0.3, 0.3]]
    # class 3 is tied for the largest: in the top 1, as tf.nn.in_top_k says
    assert measure({"top_k_categorical_accuracy": {"k": 1}}, [[0, 0, 0, 1]], p) == 1.0
    # class 0: three predictions are strictly larger, so not in the top 3
    assert measure({"top_k_categorical_accuracy": {"k": 3}}, [[1, 0, 0, 0]], p) == 0.0
    assert measure({"sparse_top_k_categorical_accuracy": {"k": 3}}, [0], p) == 0.0
    assert measure({"sparse_top_k_categorical_accuracy": {"k": 4}}, [0], p) == 1.0


def test_top_k_default_k_is_5_and_nan_rows_miss():
    p = np.tile(np.arange(7.0), (2, 1))
    p[1, 0] = np.nan
    assert metric_lib.get("top_k_categorical_accuracy").k == 5
    assert measure("sparse_top_k_categorical_accuracy", [2, 6], p) == pytest.approx(0.5)
    assert measure("sparse_top_k_categorical_accuracy", [1, 6], p) == pytest.approx(0.0)


@pytest.mark.parametrize("loss, units, expected", [
    ("binary_crossentropy", 3, BinaryAccuracy), ("bce", 3, BinaryAccuracy),
    ("categorical_crossentropy", 1, BinaryAccuracy), ("mse", 1, BinaryAccuracy),
    ("sparse_categorical_crossentropy", 10, SparseCategoricalAccuracy),
    ("scce", 10, SparseCategoricalAccuracy),
    ("categorical_crossentropy", 10, CategoricalAccuracy), ("mse", 4, CategoricalAccuracy),
    ("hinge", 4, CategoricalAccuracy),
])
def test_accuracy_resolves_from_loss_and_units(loss, units, expected):
    for name in ("accuracy", "acc"):
        assert type(metric_lib.get(name, loss=loss, output_units=units)) is expected


def test_accuracy_with_logits_thresholds_at_zero():
    logits = losses.get({"binary_crossentropy": {"from_logits": True}})
    assert resolve_accuracy(logits, 1).threshold == 0.0
    assert resolve_accuracy(losses.get("binary_crossentropy"), 1).threshold == 0.5


def test_losses_are_metrics_and_cosine_similarity_is_positive():
    m = metric_lib.get("mae")
    assert isinstance(m, LossMetric) and m.name == "mae"
    t, p = [[1.0, 0.0], [0.0, 2.0]], [[2.0, 0.0], [0.0, 3.0]]
    assert measure("mae", t, p) == pytest.approx(0.5)  # (0.5, 0.5)
    assert measure("cosine_proximity", t, p) == pytest.approx(-1.0)
    assert measure("CosineSimilarity", t, p) == pytest.approx(1.0)


# -- precision, recall, F-beta ------------------------------------------------------

def test_precision_recall_fbeta_from_counts():
    t = [[1], [1], [1], [0], [0], [0]]
    p = [[0.9], [0.8], [0.2], [0.7], [0.1], [0.5]]  # tp 2, fn 1, fp 1 (0.5 is negative)
    assert measure("precision", t, p) == pytest.approx(2 / 3)
    assert measure("recall", t, p) == pytest.approx(2 / 3)
    assert measure("fbeta_score", t, p) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    # (1 + 4)·2 / ((1 + 4)·2 + 4·1 + 1)
    assert measure({"fbeta_score": {"beta": 2}}, t, p) == pytest.approx(10 / 15)
    assert measure({"fbeta_score": {"threshold": 0.15}}, t, p) == pytest.approx(
        2 * 3 / (2 * 3 + 0 + 2))


def test_empty_positives_give_zero():
    t, p = [[0], [0]], [[0.2], [0.1]]
    assert measure("precision", t, p) == 0.0  # nothing predicted positive
    assert measure("recall", t, p) == 0.0  # no positive labels
    assert measure("fbeta_score", t, p) == 0.0
    assert measure("precision", [[1]], [[0.9]], sample_weight=[0.0]) == 0.0


def test_precision_weights_and_class_id():
    t = [[1, 0], [0, 1], [1, 1]]
    p = [[0.9, 0.9], [0.8, 0.1], [0.1, 0.7]]
    # column 0: predicted positive rows 0 (tp, w=1) and 1 (fp, w=3)
    assert measure({"precision": {"class_id": 0}}, t, p, [1.0, 3.0, 2.0]) == pytest.approx(0.25)
    # all elements: tp 0,0 (1) and 2,1 (2); fp 0,1 (1) and 1,0 (3)
    assert measure("precision", t, p, [1.0, 3.0, 2.0]) == pytest.approx(3 / 7)
    assert measure("recall", t, p, [1.0, 3.0, 2.0]) == pytest.approx(3 / (3 + 3 + 2))


# -- AUC ---------------------------------------------------------------------------

def test_auc_keras_example():
    # thresholds -1e-7, 0.5, 1+1e-7: tpr = 1, 0.5, 0; fpr = 1, 0, 0
    t, p = [0, 0, 1, 1], [0, 0.5, 0.3, 0.9]
    assert measure({"AUC": {"num_thresholds": 3}}, t, p) == pytest.approx(0.75)
    assert measure({"AUC": {"num_thresholds": 3}}, t, p, [1, 0, 0, 1]) == pytest.approx(1.0)
    assert measure({"AUC": {"num_thresholds": 3, "summation_method": "minoring"}}, t, p) \
        == pytest.approx(0.5)
    assert measure({"AUC": {"num_thresholds": 3, "summation_method": "majoring"}}, t, p) \
        == pytest.approx(1.0)


def test_auc_equals_the_exact_roc_area_when_buckets_separate_predictions():
    t = [0, 1, 0, 0, 1, 1]
    p = [0.05, 0.15, 0.25, 0.35, 0.45, 0.55]
    # pairs (positive above negative): 0.15 > 0.05; 0.45 and 0.55 > all three → 7/9
    assert measure("AUC", t, p) == pytest.approx(7 / 9)
    assert measure({"AUC": {"from_logits": True}}, t, np.log(np.array(p) / (1 - np.array(p)))) \
        == pytest.approx(7 / 9)
    assert metric_lib.get("auc").num_thresholds == 200


def test_pr_auc_interpolates_as_davis_and_goadrich():
    t, p = [1, 0, 1], [0.9, 0.6, 0.3]
    # thresholds -1e-7, 0.5, 1+1e-7: tp 2, 1, 0; P = tp + fp 3, 2, 0; positives 2
    # interval 1: slope 1, intercept 1 - 2 = -1: (1 - ln(3/2)) / 2
    # interval 2: slope 1/2, intercept 0: (1/2)·1 / 2
    expected = (1 - np.log(1.5)) / 2 + 0.25
    assert measure({"AUC": {"num_thresholds": 3, "curve": "PR"}}, t, p) == pytest.approx(expected)
    assert measure({"AUC": {"curve": "PR"}}, [0, 1], [0.1, 0.9]) == pytest.approx(1.0)


def test_auc_with_explicit_thresholds():
    m = metric_lib.get({"AUC": {"thresholds": [0.5]}})
    assert m.num_thresholds == 3
    m.update(np.array([0, 0, 1, 1.0]), np.array([0, 0.5, 0.3, 0.9]))
    assert m.result() == pytest.approx(0.75)


def test_precision_recall_top_k_as_keras():
    # Keras's examples: ties go to the lower index, so the top 2 of four 1s are the
    # first two (labels 0) and precision is 0; top 4 takes all of them
    assert measure({"precision": {"top_k": 2}}, [0, 0, 1, 1], [1, 1, 1, 1]) == 0.0
    assert measure({"precision": {"top_k": 4}}, [0, 0, 1, 1], [1, 1, 1, 1]) == 0.5
    t = [[0, 1, 1], [1, 0, 0]]
    p = [[0.2, 0.5, 0.3], [0.1, 0.6, 0.3]]
    # top 1 per row: row 0 predicts class 1 (right), row 1 class 1 (wrong)
    assert measure({"precision": {"top_k": 1}}, t, p) == pytest.approx(1 / 2)
    assert measure({"recall": {"top_k": 1}}, t, p) == pytest.approx(1 / 3)
    # top 2 with a threshold: 0.3 is in the top 2 of both rows but not above 0.4
    assert measure({"precision": {"top_k": 2, "thresholds": 0.4}}, t, p) == \
        pytest.approx(1 / 2)
    assert measure({"recall": {"top_k": 2}}, t, p) == pytest.approx(2 / 3)
    # class_id after top_k: class 2 is in the top 2 of both rows, right once
    assert measure({"precision": {"top_k": 2, "class_id": 2}}, t, p) == pytest.approx(1 / 2)
    assert measure({"recall": {"top_k": 1, "class_id": 0}}, t, p) == 0.0


def test_multi_label_auc_is_the_mean_of_the_per_label_areas(rng):
    t = (rng.random((40, 3)) < [[0.3, 0.5, 0.7]]).astype(float)
    p = np.clip(t * 0.3 + rng.random((40, 3)) * 0.7, 0, 1)
    w = rng.uniform(0.5, 2, 40)
    for curve in ("ROC", "PR"):
        per_label = [measure({"AUC": {"curve": curve}}, t[:, j], p[:, j], w) for j in range(3)]
        assert measure({"AUC": {"curve": curve, "multi_label": True}}, t, p, w) == \
            pytest.approx(np.mean(per_label), rel=1e-12)
        lw = [1.0, 0.0, 3.0]
        assert measure({"AUC": {"curve": curve, "multi_label": True, "label_weights": lw}},
                       t, p, w) == pytest.approx(np.dot(per_label, lw) / 4, rel=1e-12)
    # not multi_label: one curve over every element, each weighted by its column's weight;
    # weights 1, 0, 2 count column 0 once, drop column 1 and count column 2 twice
    stacked_t = np.concatenate([t[:, 0], t[:, 2], t[:, 2]])
    stacked_p = np.concatenate([p[:, 0], p[:, 2], p[:, 2]])
    assert measure({"AUC": {"label_weights": [1, 0, 2]}}, t, p) == \
        pytest.approx(measure("AUC", stacked_t, stacked_p), rel=1e-12)


def test_multi_label_auc_checks_the_label_count():
    from trainer.errors import ConfigError

    with pytest.raises(ConfigError, match="num_labels is 2 but the output has 3"):
        measure({"AUC": {"multi_label": True, "num_labels": 2}}, np.eye(3), np.eye(3))
    with pytest.raises(ConfigError, match="label_weights has 2 values for an output of 3"):
        measure({"AUC": {"multi_label": True, "label_weights": [1, 1]}}, np.eye(3), np.eye(3))
    with pytest.raises(ConfigError, match="num_labels is for multi_label"):
        metric_lib.get({"AUC": {"num_labels": 3}})
    m = metric_lib.get({"AUC": {"multi_label": True, "num_labels": 3}})
    assert m.get_state()["tp"].shape == (200, 3)


# -- state, names, configs -------------------------------------------------------

STATEFUL = ["accuracy", "mae", "precision", "recall", "fbeta_score", "AUC",
            {"AUC": {"curve": "PR"}}, {"top_k_categorical_accuracy": {"k": 2}},
            {"AUC": {"multi_label": True}}, {"AUC": {"multi_label": True, "curve": "PR"}},
            {"precision": {"top_k": 2}}, {"recall": {"top_k": 1, "class_id": 1}}]


@pytest.mark.parametrize("spec", STATEFUL, ids=str)
def test_state_restores_a_half_done_epoch(spec, rng):
    t = np.eye(3)[rng.integers(0, 3, 10)]
    p = rng.dirichlet(np.ones(3), size=10)
    w = rng.uniform(0.5, 2, 10)
    first = metric_lib.get(spec, loss="categorical_crossentropy", output_units=3)
    first.update(t[:4], p[:4], w[:4])
    resumed = metric_lib.get(spec, loss="categorical_crossentropy", output_units=3)
    resumed.set_state({k: np.array(v) for k, v in first.get_state().items()})
    resumed.update(t[4:], p[4:], w[4:])
    whole = metric_lib.get(spec, loss="categorical_crossentropy", output_units=3)
    whole.update(t, p, w)
    assert resumed.result() == pytest.approx(whole.result(), rel=1e-12)


@pytest.mark.parametrize("name", metrics.names())
def test_metric_config_round_trip(name):
    config = config_of(metrics.get(name))
    assert config_of(metrics.get(config)) == config


def test_metric_names():
    expected = {"binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
                "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy",
                "precision", "recall", "fbeta_score", "AUC", "cosine_similarity"}
    assert expected <= set(metrics.names())
    for alias in ("BinaryAccuracy", "Precision", "Recall", "auc", "fmeasure", "FBetaScore"):
        assert alias in metrics


# -- the exact epoch: evaluation loop in uneven batches against all at once --------

EPOCH_METRICS = ["accuracy", {"top_k_categorical_accuracy": {"k": 2}}, "precision", "recall",
                 {"fbeta_score": {"beta": 2}}, "AUC", {"AUC": {"curve": "PR"}}, "mae",
                 "categorical_crossentropy", {"AUC": {"multi_label": True}},
                 {"precision": {"top_k": 2}}]


def _model(tmp_path, loss, units, activation, metric_specs):
    cfg = config_lib.from_dict({
        "data": {"train": {"path": "unused.npz", "x": "x", "y": "y"}},
        "model": {"input_shape": [4], "layers": [{"Dense": {
            "units": units, "activation": activation, "kernel_regularizer": {"l2": 0.01}}}]},
        "compile": {"loss": loss, "metrics": metric_specs, "weighted_metrics": metric_specs},
        "dtype": "float64",
    }, Path(tmp_path) / "config.yaml")
    return build(cfg)


def _at_once(spec, y, p, w, loss):
    m = metric_lib.get(spec, loss=loss, output_units=p.shape[-1])
    m.update(y, p, w)
    return m.result()


@pytest.mark.parametrize("loss, units, activation", [
    ("categorical_crossentropy", 3, "softmax"), ("binary_crossentropy", 1, "sigmoid")])
def test_epoch_values_equal_the_metrics_of_all_predictions(tmp_path, rng, loss, units,
                                                           activation):
    n = 10
    x = rng.normal(size=(n, 4))
    ids = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 1]) % (units + 1 if units == 1 else units)
    y = np.eye(units)[ids] if units > 1 else ids[:, None].astype(float)
    sw = rng.uniform(0.2, 2.0, n)
    class_weight = {0: 1.0, 1: 3.0, 2: 0.5}
    specs = EPOCH_METRICS if units > 1 else \
        [m for m in EPOCH_METRICS if "categorical" not in str(m)] + ["binary_crossentropy"]
    model = _model(tmp_path, loss, units, activation, specs)
    split = Split({"input": x}, {model.output_names[0]: y}, sw)
    model.check_labels(split)

    logs = evaluate(model, split, batch_size=3, class_weight=class_weight)  # 3+3+3+1

    p = model.predict_on_batch([x])[0]
    w = sw * np.array([class_weight[int(i)] for i in ids])
    loss_fn = losses.get(loss)
    penalty = 0.01 * float((model.layers[0].params["kernel"] ** 2).sum())
    assert logs["loss"] == pytest.approx(float((loss_fn(y, p) * w).sum()) / n + penalty,
                                         rel=1e-12)
    names = [m.name for m in model.outputs[0].metrics][:len(specs)]
    assert names[names.index("auc") + 1] == "auc_1"  # Keras: the second AUC (PR) is auc_1
    for spec, name in zip(specs, names):
        assert logs[name] == pytest.approx(_at_once(spec, y, p, None, loss), rel=1e-12), name
        assert logs[f"weighted_{name}"] == pytest.approx(_at_once(spec, y, p, w, loss),
                                                         rel=1e-12), name
    # the means, by hand on all predictions at once
    hits = (np.argmax(p, -1) == ids) if units > 1 else ((p[:, 0] > 0.5) == ids)
    assert logs["accuracy"] == pytest.approx(hits.mean())
    assert logs["weighted_accuracy"] == pytest.approx((hits * w).sum() / w.sum())
    mae = np.abs(p - y).mean(axis=1)
    assert logs["weighted_mae"] == pytest.approx((mae * w).sum() / w.sum())
    # the counts, by hand on all predictions at once
    pos, pred = y.reshape(-1) == 1, p.reshape(-1) > 0.5
    tp, fp, fn = (pos & pred).sum(), (~pos & pred).sum(), (pos & ~pred).sum()
    assert logs["precision"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)
    assert logs["recall"] == pytest.approx(tp / (tp + fn) if tp + fn else 0.0)
    assert logs["fbeta_score"] == pytest.approx(5 * tp / (5 * tp + 4 * fn + fp) if tp else 0.0)


def test_unweighted_metrics_ignore_sample_weights(tmp_path, rng):
    model = _model(tmp_path, "categorical_crossentropy", 3, "softmax", ["accuracy"])
    x, y = rng.normal(size=(6, 4)), np.eye(3)[[0, 1, 2, 0, 1, 2]]
    split = Split({"input": x}, {model.output_names[0]: y}, np.array([1, 0, 0, 0, 0, 0.0]))
    logs = evaluate(model, split, batch_size=4)
    hits = np.argmax(model.predict_on_batch([x])[0], -1) == [0, 1, 2, 0, 1, 2]
    assert logs["accuracy"] == pytest.approx(hits.mean())
    assert logs["weighted_accuracy"] == pytest.approx(float(hits[0]))


def test_training_epoch_logs_are_exact_too(tmp_path, rng):
    """fit's loop (shuffled batches of 3 over 10 rows, a frozen layer so the weights
    stay) logs what evaluating all rows at once gives."""
    from trainer.training.loop import Loop

    specs = ["accuracy", "precision", "AUC", "mae"]
    model = _model(tmp_path, "categorical_crossentropy", 3, "softmax", specs)
    model.layers[0].trainable = False
    x, ids = rng.normal(size=(10, 4)), rng.integers(0, 3, 10)
    split = Split({"input": x}, {model.output_names[0]: np.eye(3)[ids]}, rng.uniform(0.5, 2, 10))
    class_weight = {0: 2.0, 1: 1.0, 2: 0.5}
    logs = Loop(model, split, None, [], epochs=1, batch_size=3, shuffle=True, seed=1,
                class_weight=class_weight).run_fit()
    once = evaluate(model, split, batch_size=10, class_weight=class_weight)
    for name, v in once.items():
        assert logs[name] == pytest.approx(v, rel=1e-12), name


def test_class_id_beyond_the_output_is_a_config_error():
    from trainer.errors import ConfigError

    with pytest.raises(ConfigError, match="class_id 3 is out of range for an output of 3"):
        metric_lib.get({"precision": {"class_id": 3}}, loss="mse", output_units=3)


def test_class_names_log_as_keras_logs_them():
    """metrics: [AUC] logs `auc` as tf.keras does (the instance's default name); a loss
    class as a metric its snake name; strings as written."""
    from trainer.metrics import logged_name

    assert [logged_name(n) for n in ("AUC", "RootMeanSquaredError", "MeanSquaredError",
                                     "KLDivergence", "CosineSimilarity", "Precision",
                                     "mse", "acc", "top_k_categorical_accuracy")] == [
        "auc", "root_mean_squared_error", "mean_squared_error", "kullback_leibler_divergence",
        "cosine_similarity", "precision", "mse", "acc", "top_k_categorical_accuracy"]


def test_root_mean_squared_error_is_the_root_of_the_epoch_mean():
    """Not the mean of per-batch roots: two batches give sqrt(Σ w·se / Σ w·d)."""
    m = metric_lib.get("RootMeanSquaredError")
    t = np.zeros((4, 2))
    p = np.array([[1.0, 1.0], [3.0, 1.0], [0.0, 2.0], [2.0, 2.0]])
    w = np.array([1.0, 2.0, 1.0, 0.5])
    m.update(t[:2], p[:2], w[:2])
    m.update(t[2:], p[2:], w[2:])
    se = (p ** 2).mean(axis=1)
    assert m.result() == pytest.approx(np.sqrt((se * w).sum() / w.sum()), rel=1e-12)
    state = m.get_state()
    m.reset()
    m.set_state(state)
    assert m.result() == pytest.approx(np.sqrt((se * w).sum() / w.sum()), rel=1e-12)
