"""The metric contract: ``reset()``, ``update(y_true, y_pred, sample_weight)``, ``result()``.

Metrics accumulate sums over the epoch (weighted sums for means, confusion counts for
precision, recall, F-beta and AUC), so the logged value equals the metric of the
whole epoch's predictions at once, however the batches fall. ``get_state()`` and
``set_state()`` carry those sums, so a mid-epoch checkpoint can restore them.

Like losses, a metric says what labels it wants (``labels``, ``label_range``,
``categorical``), so label arrays that do not fit are caught before training.
"""

import numpy as np


class Metric:
    #: the name logged (``accuracy``, ``val_accuracy``); set from the config name
    name = None
    #: True for ``compile.weighted_metrics``: sample and class weights apply
    weighted = False
    #: label contract, as for losses: "dense" (shape of y_pred) or "sparse" (class ids)
    labels = "dense"
    label_range = None
    categorical = False

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
    """Weighted mean of per-sample values ``values(y_true, y_pred)``: sum(w·v) / sum(w).

    Values of shape (N, T) (one per timestep) count T times per sample, each with
    the sample's weight, as Keras broadcasts sample weights.
    """

    def __init__(self):
        self.reset()

    def values(self, y_true, y_pred):
        raise NotImplementedError

    def reset(self):
        self.total = 0.0
        self.count = 0.0

    def update(self, y_true, y_pred, sample_weight=None):
        v = np.asarray(self.values(y_true, y_pred), dtype=np.float64)
        v = v.reshape(len(v), -1)
        if sample_weight is None:
            self.total += float(v.sum())
            self.count += v.size
        else:
            w = np.asarray(sample_weight, dtype=np.float64).reshape(-1, 1)
            self.total += float((v * w).sum())
            self.count += float(w.sum()) * v.shape[1]

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
        self.labels = loss.labels
        self.label_range = loss.label_range
        self.categorical = loss.categorical
        super().__init__()

    def values(self, y_true, y_pred):
        return self.loss(y_true, np.asarray(y_pred, np.float64))
