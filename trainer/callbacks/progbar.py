"""ProgbarLogger: rich progress bars on a terminal, one plain line per epoch elsewhere."""

import time
from typing import Literal

from trainer import console
from trainer.callbacks.base import Callback
from trainer.config.families import callbacks


@callbacks.register("ProgbarLogger")
class ProgbarLogger(Callback):
    """verbose 0: silent; 1: a live bar per epoch with running loss and metrics;
    2: one line per epoch. ``auto`` is 1 on a terminal and 2 otherwise (CI logs)."""

    def __init__(self, verbose: Literal[0, 1, 2, "auto"] = "auto"):
        super().__init__()
        self.verbose = verbose

    def on_train_begin(self, logs=None):
        v = self.verbose
        self._mode = (1 if console.is_terminal() else 2) if v == "auto" else v
        self._progress = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._epoch = epoch
        if self._mode == 1:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
            from rich.progress import TimeElapsedColumn

            self._progress = Progress(
                TextColumn(f"Epoch {epoch + 1}/{self.params.get('epochs')}"),
                BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[metrics]}"),
                console=console.console(), transient=False)
            self._progress.start()
            self._task = self._progress.add_task("", total=self.params.get("steps"),
                                                 metrics="")

    def on_batch_end(self, batch, logs=None):
        if self._progress is not None:
            text = "  ".join(f"{k}: {v:.4f}" for k, v in (logs or {}).items()
                             if k not in ("batch", "size") and isinstance(v, float))
            self._progress.update(self._task, completed=batch + 1, metrics=text)

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self._start
        text = " - ".join(f"{k}: {v:.4f}" for k, v in (logs or {}).items()
                          if isinstance(v, float) and k != "lr")
        if self._progress is not None:
            self._progress.update(self._task, metrics=text)
            self._progress.stop()
            self._progress = None
        elif self._mode == 2:
            print(f"Epoch {epoch + 1}/{self.params.get('epochs')} - {elapsed:.1f}s - {text}",
                  file=console.stream(), flush=True)

    def on_train_end(self, logs=None):
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
