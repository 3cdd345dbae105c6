"""EventLogger: epoch events for `--log-format jsonl` (see trainer/events.py)."""

from trainer import events
from trainer.callbacks.base import Callback


class EventLogger(Callback):
    """Emits train_started, epoch_end and train_end events; added by the CLI, not
    named in configs."""

    def on_train_begin(self, logs=None):
        events.emit("train_started", epochs=self.params.get("epochs"),
                    steps=self.params.get("steps"))

    def on_epoch_end(self, epoch, logs=None):
        events.emit("epoch_end", epoch=epoch, logs=dict(logs or {}))

    def on_train_end(self, logs=None):
        events.emit("train_end", logs=dict(logs or {}))
