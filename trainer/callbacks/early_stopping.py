"""EarlyStopping: stop when a monitored value has stopped improving, as Keras 2."""

import math
from typing import Literal, Optional

from trainer import checkpoint
from trainer.callbacks.base import Callback, Monitor, copy_weights, say
from trainer.callbacks.model_checkpoint import save_best
from trainer.registries import callbacks
from trainer.registry import NonNegativeInt


@callbacks.register("EarlyStopping")
class EarlyStopping(Callback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs.

    Args:
        monitor: the logged value to watch (default val_loss).
        min_delta: a change smaller than this is no improvement.
        patience: epochs without improvement before stopping.
        verbose: 1 prints the epoch training stopped at.
        mode: auto / min / max (``auto``: maximise names with ``acc``, auc,
            precision, recall, fbeta; minimise the rest).
        baseline: training stops if the monitor does not improve on this value
            within ``patience`` epochs.
        restore_best_weights: put back the weights of the best epoch when training
            ends. Unlike Keras 2, which restored them only when this callback
            stopped the run, they are restored whenever training ends normally
            (epochs exhausted, or another callback stopped it), so the model that
            fit returns is the best one seen. ``checkpoints/last.h5`` still holds the
            last epoch's weights, so a resumed run continues where it stopped.
        start_from_epoch: epochs to wait before watching the monitor (warm-up).

    When training from a config without a ModelCheckpoint, EarlyStopping writes
    ``checkpoints/best.h5`` whenever the monitor improves.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0,
                 patience: NonNegativeInt = 0, verbose: Literal[0, 1] = 0,
                 mode: Literal["auto", "min", "max"] = "auto", baseline: Optional[float] = None,
                 restore_best_weights: bool = False, start_from_epoch: NonNegativeInt = 0):
        super().__init__()
        self.monitor = monitor
        self.min_delta = min_delta
        self.patience = patience
        self.verbose = verbose
        self.mode = mode
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.tracker = Monitor("EarlyStopping", monitor, mode, min_delta)
        self.wait = 0
        self.stopped_epoch = 0
        self.best_epoch = 0
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self.tracker.check_available(self.params, self.where)

    def on_epoch_end(self, epoch, logs=None):
        current = self.tracker.value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = copy_weights(self.model)  # the first epoch is the reference
        self.wait += 1
        if self.tracker.better(current, self.tracker.best):
            self.tracker.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = copy_weights(self.model)
            save_best(self)
            if self.baseline is None or self.tracker.better(current, self.baseline):
                self.wait = 0  # only an improvement that also beats the baseline resets
                return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            say(f"Epoch {self.stopped_epoch + 1:05d}: early stopping")
        if self.restore_best_weights and self.best_weights is None:
            self._best_from_file()  # a resumed run: the best epoch came before the resume
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                say(f"Restoring model weights from the end of the best epoch: "
                    f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def _best_from_file(self):
        if self.writes_best and self.run is not None and math.isfinite(self.tracker.best):
            path = self.run.best
            if path.exists():
                checkpoint.load(path, self.model, with_optimizer=False)
                self.best_weights = copy_weights(self.model)

    def get_state(self):
        return {**self.tracker.state(), "wait": self.wait, "stopped_epoch": self.stopped_epoch,
                "best_epoch": self.best_epoch}

    def set_state(self, state):
        self.tracker.set_state(state)
        self.wait = int(state["wait"])
        self.stopped_epoch = int(state["stopped_epoch"])
        self.best_epoch = int(state["best_epoch"])


