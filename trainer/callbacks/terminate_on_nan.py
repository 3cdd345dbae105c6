"""TerminateOnNaN: stop at the first batch whose loss is NaN or Inf, as Keras 2.

The model never applies an update from a non-finite loss, and the epoch loop turns
such a batch into a ``DivergedError`` (exit code 5, run status ``diverged``) whether
or not this callback is listed; ``checkpoints/last.h5`` keeps the last good epoch.
Listing it adds Keras's message and stops the loop through ``stop_training``.
"""

import math

from trainer.callbacks.base import Callback, say
from trainer.config.families import callbacks


@callbacks.register("TerminateOnNaN")
class TerminateOnNaN(Callback):
    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            say(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True
