"""A callback that `benchmarks/run.py` adds to `trainer fit configs/quickstart.yaml`
(with ``--set 'callbacks=[{callback: "first_step_hook:FirstStep"}]'`` and this folder on
PYTHONPATH) to time the launch of the command to its first training step.

At the end of the first training batch it writes ``{"time": <time.time()>}`` to the
file named by the environment variable TRAINER_BENCH_FIRST_STEP and stops training
(the loop honours ``stop_training`` at the end of the batch).
"""

import json
import os
import time

from trainer.callbacks.base import Callback


class FirstStep(Callback):
    def __init__(self):
        super().__init__()
        self.done = False

    def on_batch_end(self, batch, logs=None):
        if self.done:
            return
        self.done = True
        now = time.time()
        path = os.environ.get("TRAINER_BENCH_FIRST_STEP")
        if path:
            with open(path, "w") as f:
                json.dump({"time": now, "batch": batch}, f)
        self.model.stop_training = True
