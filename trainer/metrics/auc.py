"""AUC: the area under the ROC or precision-recall curve, as Keras's ``AUC`` metric
computes it from confusion counts at fixed thresholds (exact over the epoch)."""

from typing import Annotated, Literal

import numpy as np

from trainer.errors import ConfigError
from trainer.metrics.confusion import ConfusionMetric, confusion_counts, ratio
from trainer.config.families import metrics
from trainer.config.registry import Schema

EPSILON = 1e-7


@metrics.register("AUC", "auc")
class AUC(ConfusionMetric):
    """Approximate AUC by a Riemann sum over ``num_thresholds`` thresholds.

    The thresholds are -1e-7, i/(num_thresholds-1) for i = 1 … num_thresholds-2, and
    1+1e-7; at each, a prediction above it is positive. Every output element is one
    binary decision; a label counts as positive with weight y_true (labels 0/1).
    Predictions are meant to lie in [0, 1] (Keras refuses others; here one below 0
    is negative and one above 1 positive at every threshold).

    Args:
        num_thresholds (default 200): how many thresholds (at least 2).
        curve (default ROC): ``ROC`` (true positive rate over false positive rate) or
            ``PR`` (precision over recall).
        summation_method (default interpolation): ``interpolation`` takes the mean
            height of each interval (trapezoids) for ROC, and for PR interpolates
            true and false positives linearly (Davis & Goadrich 2006) as Keras does;
            ``minoring`` and ``majoring`` take the lower and upper height (bounds).
        thresholds (default none): explicit thresholds in [0, 1] instead of an even
            grid; -1e-7 and 1+1e-7 are added.
        multi_label (default false): treat each column of the output as its own label:
            one curve and area per label, and the result is their mean (weighted by
            ``label_weights`` when given). False counts every element in one curve.
        num_labels (default none): the number of label columns, checked against the
            output when given (multi_label only).
        label_weights (default none): one non-negative weight per label column. With
            multi_label they weight the per-label areas; without, each element's
            decision is weighted by its column's weight in the shared counts.
        from_logits (default false): apply a sigmoid to y_pred first.
    """

    def __init__(self, num_thresholds: Annotated[int, Schema(minimum=2)] = 200,
                 curve: Literal["ROC", "PR"] = "ROC",
                 summation_method: Literal["interpolation", "minoring",
                                           "majoring"] = "interpolation",
                 thresholds: list[Annotated[float, Schema(minimum=0, maximum=1)]] | None = None,
                 multi_label: bool = False,
                 num_labels: Annotated[int, Schema(minimum=1)] | None = None,
                 label_weights: list[Annotated[float, Schema(minimum=0)]] | None = None,
                 from_logits: bool = False):
        if thresholds is None and num_thresholds < 2:
            raise ConfigError(f"AUC: num_thresholds must be at least 2, got {num_thresholds}")
        if num_labels is not None and not multi_label:
            raise ConfigError("AUC: num_labels is for multi_label: true")
        if label_weights is not None:
            if num_labels is not None and len(label_weights) != num_labels:
                raise ConfigError(f"AUC: label_weights has {len(label_weights)} values "
                                  f"for num_labels {num_labels}")
            if any(w < 0 for w in label_weights):
                raise ConfigError("AUC: label_weights must be non-negative")
        self.multi_label = multi_label
        self.num_labels = num_labels
        self.label_weights = label_weights
        self.num_thresholds = len(thresholds) + 2 if thresholds is not None else num_thresholds
        self.curve = curve
        self.summation_method = summation_method
        self.thresholds = thresholds
        self.from_logits = from_logits
        inner = sorted(thresholds) if thresholds is not None else \
            [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
        super().__init__([0.0 - EPSILON, *inner, 1.0 + EPSILON])

    def prepare(self, y_true, y_pred):
        t, p = super().prepare(y_true, y_pred)
        if self.from_logits:
            from trainer.losses.crossentropy import sigmoid  # late: keeps registry order
            p = sigmoid(np.asarray(p, np.float64))
        return t, p

    def reset(self):
        super().reset()
        if self.multi_label and self.num_labels is not None:
            self._per_label(self.num_labels)

    def _per_label(self, labels):
        """Counts of shape (thresholds, labels), made on the first batch unless
        num_labels gave the width."""
        n = len(self.cutoffs)
        self.tp, self.fp, self.tn, self.fn = (np.zeros((n, labels)) for _ in range(4))

    def update(self, y_true, y_pred, sample_weight=None):
        t, p = self.prepare(y_true, y_pred)
        labels = p.shape[-1] if p.ndim > 1 else 1
        if self.label_weights is not None and len(self.label_weights) != labels:
            raise ConfigError(f"metric {self.name}: label_weights has "
                              f"{len(self.label_weights)} values for an output of "
                              f"{labels} label columns")
        if not self.multi_label:
            counts = confusion_counts(t, p, self.cutoffs, sample_weight, self.label_weights)
            for acc, c in zip((self.tp, self.fp, self.tn, self.fn), counts):
                acc += c
            return
        if self.num_labels is not None and labels != self.num_labels:
            raise ConfigError(f"metric {self.name}: num_labels is {self.num_labels} but the "
                              f"output has {labels} label columns")
        if self.tp.ndim == 1:
            self._per_label(labels)
        t, p = t.reshape(-1, labels), p.reshape(-1, labels)
        w = None if sample_weight is None else \
            np.repeat(np.asarray(sample_weight, np.float64).reshape(-1),
                      len(p) // max(len(sample_weight), 1))
        for j in range(labels):
            counts = confusion_counts(t[:, j], p[:, j], self.cutoffs, w)
            for acc, c in zip((self.tp, self.fp, self.tn, self.fn), counts):
                acc[:, j] += c

    def result(self):
        areas = self._areas()
        if np.ndim(areas) == 0:
            return float(areas)
        if self.label_weights is None:
            return float(np.mean(areas))
        w = np.asarray(self.label_weights, np.float64)
        return float(ratio((areas * w).sum(), w.sum()))

    def _areas(self):
        """The area under the curve: a number, or one per label (multi_label)."""
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._interpolated_pr()
        recall = ratio(self.tp, self.tp + self.fn)
        if self.curve == "ROC":
            x, y = ratio(self.fp, self.fp + self.tn), recall
        else:
            x, y = recall, ratio(self.tp, self.tp + self.fp)
        heights = {"interpolation": (y[:-1] + y[1:]) / 2,
                   "minoring": np.minimum(y[:-1], y[1:]),
                   "majoring": np.maximum(y[:-1], y[1:])}[self.summation_method]
        return ((x[:-1] - x[1:]) * heights).sum(axis=0)

    def _interpolated_pr(self):
        """Keras's closed form: within each interval TP and P = TP + FP vary linearly,
        and the area is slope·(dTP + intercept·log(P_a / P_b)) / positives."""
        tp, p = self.tp, self.tp + self.fp
        dtp = tp[:-1] - tp[1:]
        dp = p[:-1] - p[1:]
        slope = ratio(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * p[1:]
        both = (p[:-1] > 0) & (p[1:] > 0)
        p_ratio = np.where(both, ratio(p[:-1], np.maximum(p[1:], 0)), 1.0)
        increments = ratio(slope * (dtp + intercept * np.log(p_ratio)),
                           np.maximum(tp[1:] + self.fn[1:], 0))
        return increments.sum(axis=0)
