"""History (always on; it is what fit returns) and BaseLogger."""

from trainer.callbacks.base import Callback
from trainer.config.families import callbacks


@callbacks.register("History")
class History(Callback):
    def __init__(self):
        super().__init__()
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch, logs=None):
        """One entry per epoch in every list: None where an epoch did not log a key
        (val_ values on the epochs ``validation_freq`` skips)."""
        logs = logs or {}
        for k in logs:
            self.history.setdefault(k, [None] * len(self.epoch))
        self.epoch.append(epoch)
        for k, values in self.history.items():
            values.append(logs.get(k))

    def rows(self):
        """One dict per epoch: ``epoch`` then every value that epoch logged."""
        return [{"epoch": e, **{k: v[i] for k, v in self.history.items()
                                if i < len(v) and v[i] is not None}}
                for i, e in enumerate(self.epoch)]

    def get_state(self):
        return {"epoch": self.epoch, "history": self.history}

    def set_state(self, state):
        self.epoch = list(state["epoch"])
        self.history = {k: list(v) for k, v in state["history"].items()}


@callbacks.register("BaseLogger")
class BaseLogger(Callback):
    """Keras 2's epoch averaging of batch values. trainer's loop already logs every
    loss and metric as its exact mean over the epoch (weighted by batch size), so
    this only fills in an epoch value that a batch logged and the epoch did not
    (it is always on in Keras 2; listing it is harmless).

    Args:
        stateful_metrics: names whose last batch value is kept rather than averaged.
    """

    def __init__(self, stateful_metrics: list[str] | None = None):
        super().__init__()
        self.stateful_metrics = stateful_metrics

    def on_epoch_begin(self, epoch, logs=None):
        self.seen = 0
        self.totals = {}

    def on_batch_end(self, batch, logs=None):
        logs = logs or {}
        n = logs.get("size", 0)
        self.seen += n
        for k, v in logs.items():
            if k in ("batch", "size") or not isinstance(v, (int, float)):
                continue
            if k in (self.stateful_metrics or ()):
                self.totals[k] = v
            else:
                self.totals[k] = self.totals.get(k, 0.0) + v * n

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not self.seen:
            return
        for k, total in self.totals.items():
            if k not in logs:
                logs[k] = total if k in (self.stateful_metrics or ()) else total / self.seen
