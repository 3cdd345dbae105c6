"""History: always on; records each epoch's logs. It is what fit returns."""

from trainer.callbacks.base import Callback
from trainer.registries import callbacks


@callbacks.register("History")
class History(Callback):
    def __init__(self):
        super().__init__()
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def rows(self):
        """One dict per epoch: ``epoch`` then every logged value."""
        keys = list(self.history)
        return [{"epoch": e, **{k: self.history[k][i] for k in keys}}
                for i, e in enumerate(self.epoch)]

    def get_state(self):
        return {"epoch": self.epoch, "history": self.history}

    def set_state(self, state):
        self.epoch = list(state["epoch"])
        self.history = {k: list(v) for k, v in state["history"].items()}
