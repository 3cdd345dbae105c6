"""The metric contract: ``reset()``, ``update(y_true, y_pred, sample_weight)``, ``result()``.

Metrics accumulate sums over the epoch, so the logged value equals the metric of the
whole epoch's predictions at once, however the batches fall.
"""

import numpy as np


class Metric:
    #: the name logged (``accuracy``, ``val_accuracy``); set from the config name
    name = None

    def reset(self):
        raise NotImplementedError

    def update(self, y_true, y_pred, sample_weight=None):
        raise NotImplementedError

    def result(self):
        raise NotImplementedError

    def get_state(self):
        """Accumulators as a name → array mapping (saved in mid-epoch checkpoints)."""
        return {}

    def set_state(self, state):
        pass


class MeanMetric(Metric):
    """Weighted mean of per-sample values ``values(y_true, y_pred)``: sum(w·v) / sum(w)."""

    def __init__(self):
        self.reset()

    def values(self, y_true, y_pred):
        raise NotImplementedError

    def reset(self):
        self.total = 0.0
        self.count = 0.0

    def update(self, y_true, y_pred, sample_weight=None):
        v = np.asarray(self.values(y_true, y_pred), dtype=np.float64)
        if sample_weight is None:
            self.total += float(v.sum())
            self.count += v.size
        else:
            w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
            self.total += float((v.reshape(len(w), -1).mean(axis=1) * w).sum())
            self.count += float(w.sum())

    def result(self):
        return self.total / self.count if self.count else 0.0

    def get_state(self):
        return {"total": np.float64(self.total), "count": np.float64(self.count)}

    def set_state(self, state):
        self.total = float(state["total"])
        self.count = float(state["count"])


class LossMetric(MeanMetric):
    """A loss used as a metric: the weighted mean of its per-sample values."""

    def __init__(self, loss, name):
        self.loss = loss
        self.name = name
        super().__init__()

    def values(self, y_true, y_pred):
        return self.loss(y_true, y_pred)
