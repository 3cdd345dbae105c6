"""ModelCheckpoint: save the model at the end of epochs (or every N batches), as Keras 2."""

from pathlib import PurePath
from typing import Literal, Union

from trainer.callbacks.base import (Callback, Monitor, check_format_specs, check_relative,
                                    check_template, inside_run, run_root, save_best, say,
                                    template_fields)
from trainer.errors import ConfigError
from trainer.config.families import callbacks
from trainer.config.registry import PositiveInt
from trainer.runfiles import CHECKPOINTS


class _Ones(dict):
    """Every template field is 1 (an int formats with d, f, e or g alike)."""

    def __missing__(self, key):
        return 1


@callbacks.register("ModelCheckpoint")
class ModelCheckpoint(Callback):
    """Save the weights to ``filepath`` after every epoch (or every ``period`` epochs,
    or every ``save_freq`` batches).

    Args:
        filepath: a ``str.format`` template filled with ``epoch`` (1-based, as Keras)
            and the epoch's logs, e.g. ``weights.{epoch:02d}-{val_loss:.2f}.h5``.
            Relative to the run's ``checkpoints/`` folder; it may not leave the run
            folder (no absolute path, no ``..``).
        monitor: the logged value compared for ``save_best_only`` (default val_loss).
        verbose: 1 prints a line for each save or non-improvement.
        save_best_only: save only when ``monitor`` improves on its best so far.
        save_weights_only: weights alone; otherwise the optimizer state too.
        mode: auto / min / max: whether the monitor should fall or rise. ``auto``
            maximises names with ``acc`` (and auc, precision, recall, fbeta).
        period: save every this many epochs (Keras 2's older argument).
        save_freq: ``epoch``, or a number of batches between saves.

    When training from a config, the first ModelCheckpoint also writes
    ``checkpoints/best.h5`` whenever its monitor improves (whatever
    ``save_best_only`` says).
    """

    def __init__(self, filepath: str, monitor: str = "val_loss", verbose: Literal[0, 1] = 0,
                 save_best_only: bool = False, save_weights_only: bool = False,
                 mode: Literal["auto", "min", "max"] = "auto", period: PositiveInt = 1,
                 save_freq: Union[Literal["epoch"], PositiveInt] = "epoch"):
        super().__init__()
        self.filepath = check_relative(filepath, "ModelCheckpoint.filepath")
        self.fields = template_fields(filepath, "ModelCheckpoint.filepath")
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.mode = mode
        self.period = period
        self.save_freq = save_freq
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq > 0):
            raise ConfigError(f"ModelCheckpoint.save_freq: 'epoch' or a positive number of "
                              f"batches, got {save_freq!r}")
        self.tracker = Monitor("ModelCheckpoint", monitor, mode)
        self.epochs_since_last_save = 0
        self.batches_since_last_save = 0
        self._epoch = 0

    def outputs(self):
        """The file of a sample epoch (every field 1): a template without fields, such
        as ``last.h5``, names one file; each path is checked again when saved."""
        check_format_specs(self.filepath, "ModelCheckpoint.filepath", self.where)
        try:
            sample = self.filepath.format_map(_Ones())
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return []  # a template that cannot format is refused when checked
        return [("ModelCheckpoint.filepath", f"{CHECKPOINTS}/{sample}", False)]

    def on_train_begin(self, logs=None):
        extra = ["batch", "size"] if self.save_freq != "epoch" else []
        sample = check_template(self.filepath, self.fields, self.params, extra,
                                "ModelCheckpoint.filepath", self.where)
        check_relative(sample, "ModelCheckpoint.filepath (filled in)")
        # its folder: no symlink out of the run folder (the file is recorded when written)
        inside_run(self, str(PurePath(sample).parent), CHECKPOINTS, folder=True)
        if self.save_best_only:
            self.tracker.check_available(self.params, self.where)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self.batches_since_last_save += 1
        if self.batches_since_last_save >= self.save_freq:
            self.batches_since_last_save = 0
            self._save(self._epoch, logs or {})

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        current = self.tracker.value(logs)
        improved = current is not None and self.tracker.better(current, self.tracker.best)
        previous = self.tracker.best
        if improved and not self.save_best_only:
            self.tracker.best = current
        if improved:
            save_best(self)
        if self.save_freq != "epoch":
            return
        self.epochs_since_last_save += 1
        if self.epochs_since_last_save >= self.period:
            self.epochs_since_last_save = 0
            self._save(epoch, logs, improved, previous)

    def _save(self, epoch, logs, improved=None, previous=None):
        missing = [f for f in self.fields if f != "epoch" and f not in logs]
        if missing:  # e.g. {val_loss} on an epoch that validation_freq skips
            if self.verbose:
                say(f"Epoch {epoch + 1:05d}: {', '.join(missing)} not logged this epoch; "
                    f"not saving {self.filepath}")
            return
        path = inside_run(self, self.filepath.format(epoch=epoch + 1, **logs), CHECKPOINTS)
        if self.save_best_only:
            current = self.tracker.value(logs)
            if current is None:  # the monitor is not logged this epoch
                return
            if improved is None:  # a batch-level save: compare here
                previous = self.tracker.best
                improved = current is not None and self.tracker.better(current, previous)
            if not improved:
                if self.verbose:
                    say(f"Epoch {epoch + 1:05d}: {self.monitor} did not improve from "
                        f"{previous:.5f}")
                return
            self.tracker.best = current
            if self.verbose:
                say(f"Epoch {epoch + 1:05d}: {self.monitor} improved from {previous:.5f} "
                    f"to {current:.5f}, saving model to {path}")
        elif self.verbose:
            say(f"Epoch {epoch + 1:05d}: saving model to {path}")
        if self.save_weights_only:  # as Keras: the model writes itself
            self.model.save_weights(path, root=run_root(self))
        else:
            self.model.save(path, root=run_root(self))

    def get_state(self):
        return {**self.tracker.state(), "epochs_since_last_save": self.epochs_since_last_save,
                "batches_since_last_save": self.batches_since_last_save}

    def set_state(self, state):
        self.tracker.set_state(state)
        self.epochs_since_last_save = int(state["epochs_since_last_save"])
        self.batches_since_last_save = int(state["batches_since_last_save"])
