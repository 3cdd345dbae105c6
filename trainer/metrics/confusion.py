"""Metrics from confusion counts: precision, recall, fbeta_score.

They accumulate true/false positives/negatives over the epoch and compute the metric
from the totals, so the epoch value is exact (not a mean of batch values). Every
element of y_pred is one binary decision (micro averaging), positive when
y_pred > threshold; a label counts as positive with weight y_true (labels 0/1).
With ``top_k`` only the k largest predictions of each row can be positive (Keras's
``_filter_top_k``: the others count as -inf; ties go to the lower index, as
``tf.math.top_k``).
"""

from typing import Annotated

import numpy as np

from trainer.errors import ConfigError
from trainer.metrics.base import Metric
from trainer.config.families import metrics
from trainer.config.registry import NonNegativeInt, PositiveInt, Rate, Schema


def confusion_counts(y_true, y_pred, thresholds, sample_weight=None, element_weight=None):
    """(tp, fp, tn, fn), each of shape (len(thresholds),): weighted counts of the
    decisions y_pred > thresholds[i]. ``thresholds`` must be ascending. A decision's
    weight is its row's ``sample_weight`` times its ``element_weight`` (broadcast
    over the rows, e.g. one weight per label column)."""
    p = np.asarray(y_pred, np.float64).reshape(len(y_pred), -1)
    t = np.clip(np.asarray(y_true, np.float64).reshape(p.shape), 0.0, 1.0)
    w = np.ones((len(p), 1)) if sample_weight is None else \
        np.asarray(sample_weight, np.float64).reshape(-1, 1)
    if element_weight is not None:
        w = w * np.asarray(element_weight, np.float64).reshape(1, -1)
    # above[j] = how many thresholds lie strictly below p_j: positive at thresholds[:above]
    above = np.searchsorted(thresholds, p.reshape(-1), side="left")
    n = len(thresholds)
    pos_w = (t * w).reshape(-1)
    neg_w = ((1.0 - t) * w).reshape(-1)
    tp = np.cumsum(np.bincount(above, pos_w, n + 1)[::-1])[::-1][1:]
    fp = np.cumsum(np.bincount(above, neg_w, n + 1)[::-1])[::-1][1:]
    return tp, fp, neg_w.sum() - fp, pos_w.sum() - tp


def ratio(a, b):
    """a / b, and 0 where b is 0 (no_nan division, as Keras)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.where(b > 0, a / np.where(b > 0, b, 1.0), 0.0)


def filter_top_k(y_pred, k):
    """y_pred with every value outside the k largest of its row (last axis) set to
    -inf; of equal values the lower index is kept first."""
    p = np.asarray(y_pred, np.float64)
    if k >= p.shape[-1]:
        return p
    order = np.argsort(-p, axis=-1, kind="stable")  # NaN sorts last
    keep = np.zeros(p.shape, bool)
    np.put_along_axis(keep, order[..., :k], True, axis=-1)
    return np.where(keep, p, -np.inf)


def default_threshold(thresholds, top_k):
    """Keras: 0.5, or -inf with top_k (every top-k prediction is positive)."""
    if thresholds is not None:
        return thresholds
    return 0.5 if top_k is None else -np.inf


class ConfusionMetric(Metric):
    """Confusion counts at fixed ascending thresholds, accumulated over the epoch."""

    label_range = (0.0, 1.0)
    class_id = None
    top_k = None

    def __init__(self, cutoffs):
        self.cutoffs = np.asarray(cutoffs, np.float64)
        self.reset()

    def reset(self):
        n = len(self.cutoffs)
        self.tp, self.fp, self.tn, self.fn = (np.zeros(n) for _ in range(4))

    def prepare(self, y_true, y_pred):
        """The predictions and labels counted (one class column with class_id)."""
        y_pred = np.asarray(y_pred)
        y_true = np.asarray(y_true).reshape(y_pred.shape)
        if self.top_k is not None:
            y_pred = filter_top_k(y_pred, self.top_k)
        if self.class_id is not None:
            if self.class_id >= y_pred.shape[-1]:
                raise ConfigError(f"metric {self.name}: class_id {self.class_id} is out of "
                                  f"range for an output of {y_pred.shape[-1]} units")
            return y_true[..., self.class_id], y_pred[..., self.class_id]
        return y_true, y_pred

    def update(self, y_true, y_pred, sample_weight=None):
        t, p = self.prepare(y_true, y_pred)
        counts = confusion_counts(t, p, self.cutoffs, sample_weight)
        for acc, c in zip((self.tp, self.fp, self.tn, self.fn), counts):
            acc += c

    def get_state(self):
        return {"tp": self.tp.copy(), "fp": self.fp.copy(), "tn": self.tn.copy(),
                "fn": self.fn.copy()}

    def set_state(self, state):
        for k in ("tp", "fp", "tn", "fn"):
            setattr(self, k, np.asarray(state[k], np.float64).copy())


class ThresholdMetric(ConfusionMetric):
    """Counts of one decision per element: above a threshold, among the top k.

    Args:
        thresholds (default 0.5, or none with top_k): a prediction above it is
            positive.
        top_k (default none): only the k largest predictions of each row can be
            positive (the others count as negative), as Keras.
        class_id (default none): count only this column of the output (after top_k).
    """

    def __init__(self, thresholds: Rate | None = None, top_k: PositiveInt | None = None,
                 class_id: NonNegativeInt | None = None):
        self.thresholds = thresholds
        self.top_k = top_k
        self.class_id = class_id
        super().__init__([default_threshold(thresholds, top_k)])


@metrics.register("precision", "Precision")
class Precision(ThresholdMetric):
    """TP / (TP + FP) over the epoch (0 when nothing is predicted positive).
    Arguments: thresholds, top_k, class_id (see ThresholdMetric)."""

    def result(self):
        return float(ratio(self.tp, self.tp + self.fp)[0])


@metrics.register("recall", "Recall")
class Recall(ThresholdMetric):
    """TP / (TP + FN) over the epoch (0 when the labels hold no positive).
    Arguments: thresholds, top_k, class_id (see ThresholdMetric)."""

    def result(self):
        return float(ratio(self.tp, self.tp + self.fn)[0])


@metrics.register("fbeta_score", "FBetaScore", "fmeasure", "f1_score")
class FBetaScore(ConfusionMetric):
    """(1 + β²)·TP / ((1 + β²)·TP + β²·FN + FP) over the epoch, which is
    (1 + β²)·P·R / (β²·P + R) for precision P and recall R (Keras 2.0's fbeta_score,
    micro-averaged over every output element); 0 when TP is 0.

    Args:
        beta (default 1): weight of recall against precision (β > 1 favours recall).
        threshold (default 0.5): a prediction above it is positive.
    """

    def __init__(self, beta: Annotated[float, Schema(minimum=0)] = 1.0,
                 threshold: Rate = 0.5):
        if beta < 0:
            raise ConfigError(f"fbeta_score: beta must be >= 0, got {beta}")
        self.beta = beta
        self.threshold = threshold
        super().__init__([threshold])

    def result(self):
        bb = self.beta ** 2
        return float(ratio((1 + bb) * self.tp, (1 + bb) * self.tp + bb * self.fn + self.fp)[0])
