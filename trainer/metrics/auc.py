"""AUC: the area under the ROC or precision-recall curve, as Keras's ``AUC`` metric
computes it from confusion counts at fixed thresholds (exact over the epoch)."""

from typing import Annotated, Literal

import numpy as np

from trainer.errors import ConfigError
from trainer.metrics.confusion import ConfusionMetric, ratio
from trainer.registries import metrics
from trainer.registry import Schema

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
        from_logits (default false): apply a sigmoid to y_pred first.
    """

    def __init__(self, num_thresholds: Annotated[int, Schema(minimum=2)] = 200,
                 curve: Literal["ROC", "PR"] = "ROC",
                 summation_method: Literal["interpolation", "minoring",
                                           "majoring"] = "interpolation",
                 thresholds: list[Annotated[float, Schema(minimum=0, maximum=1)]] | None = None,
                 from_logits: bool = False):
        if thresholds is None and num_thresholds < 2:
            raise ConfigError(f"AUC: num_thresholds must be at least 2, got {num_thresholds}")
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

    def result(self):
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
        return float(((x[:-1] - x[1:]) * heights).sum())

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
        return float(increments.sum())
