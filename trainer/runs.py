"""The run folder: resolved config, run.json, history.csv, checkpoints/."""

import csv
import io
import json
import math
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import yaml

from trainer import __version__
from trainer.callbacks.base import Callback
from trainer.fileio import write_text


def now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run_dir(name, base="runs"):
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(base) / f"{name}-{stamp}"
    n = 1
    while path.exists():
        path = Path(base) / f"{name}-{stamp}-{n}"
        n += 1
    return path


def versions():
    import h5py
    import numpy

    out = {"trainer": __version__, "python": platform.python_version(),
           "numpy": numpy.__version__, "h5py": h5py.__version__,
           "platform": platform.platform()}
    try:
        import numba
        out["numba"] = numba.__version__
    except ImportError:
        pass
    return out


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class Run:
    """One run folder. Every file is written atomically."""

    def __init__(self, path):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.meta = {}

    def create(self, resolved_config, seed, argv):
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        write_text(self.path / "config.yaml",
                   yaml.safe_dump(resolved_config, sort_keys=False, allow_unicode=True))
        self.meta = {"status": "running", "seed": seed, "command": argv,
                     "started": now(), "ended": None, "versions": versions(),
                     "final_metrics": {}}
        self.write_meta()

    def write_meta(self):
        write_text(self.path / "run.json", json.dumps(self.meta, indent=2) + "\n")

    def finish(self, status, metrics=None, error=None):
        self.meta.update(status=status, ended=now())
        if metrics is not None:
            self.meta["final_metrics"] = {k: _jsonable(v) for k, v in metrics.items()}
        if error is not None:
            self.meta["error"] = error
        self.write_meta()

    def write_history(self, rows):
        """history.csv as Keras's CSVLogger writes it: epoch, then one column per key."""
        keys = ["epoch"] + sorted({k for r in rows for k in r if k != "epoch"})
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n", restval="")
        w.writeheader()
        for r in rows:
            w.writerow(r)
        write_text(self.path / "history.csv", buf.getvalue())

    @property
    def last(self):
        return self.checkpoints / "last.h5"

    def load_config_text(self):
        return (self.path / "config.yaml").read_text(encoding="utf-8")


class RunRecorder(Callback):
    """Writes history.csv and checkpoints/last.h5 at the end of every epoch."""

    def __init__(self, run, save_checkpoint):
        super().__init__()
        self.run_folder = run
        self.save_checkpoint = save_checkpoint
        self.history = None

    def on_epoch_end(self, epoch, logs=None):
        self.run_folder.write_history(self.history.rows())
        self.save_checkpoint()


def command_line():
    return [Path(sys.argv[0]).name] + sys.argv[1:]
