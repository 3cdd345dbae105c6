"""A callback that `benchmarks/bench_hdf5.py` passes to ``trainer.app.fit.fit(...,
callbacks=[EpochTimer()])`` to time the training loop through the callback contract
(on_train_begin … on_train_end), so the benchmark does not depend on how the loop is
written inside.

``train_seconds``: from on_train_begin to on_train_end — every epoch with its
callbacks, validation and the checkpoint written at each epoch's end; None until
training ended. ``epoch_seconds``: one entry per epoch, on_epoch_begin to on_epoch_end.
"""

import time

from trainer.callbacks.base import Callback


class EpochTimer(Callback):
    def __init__(self):
        super().__init__()
        self.train_seconds = None
        self.epoch_seconds = []
        self._train_start = self._epoch_start = None

    def on_train_begin(self, logs=None):
        self._train_start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.perf_counter() - self._epoch_start)

    def on_train_end(self, logs=None):
        self.train_seconds = time.perf_counter() - self._train_start
