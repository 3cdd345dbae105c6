"""The run folder: resolved config, run.json, history.csv, checkpoints/, .lock."""

import contextlib
import csv
import io
import json
import math
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import yaml

from trainer import __version__
from trainer.errors import ConfigError
from trainer.fileio import WriteError, remove_temporaries, write_text


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
    """Versions that decide whether a run reproduces (read from package metadata, so
    nothing heavy is imported for it)."""
    from importlib import metadata

    out = {"trainer": __version__, "python": platform.python_version(),
           "platform": platform.platform()}
    for package in ("numpy", "numba", "h5py"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return out


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class Run:
    """One run folder. Every file is written atomically; one process at a time
    writes it (``lock``)."""

    def __init__(self, path):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.meta = {}

    def save_best(self, model):
        """checkpoints/best.h5: weights and optimizer state of the best epoch so far."""
        from trainer.store import checkpoint

        checkpoint.save(self.checkpoints / "best.h5", model)

    def load_best(self, model):
        """Put checkpoints/best.h5's weights into ``model``; False if there is none."""
        from trainer.store import checkpoint

        path = self.checkpoints / "best.h5"
        if not path.exists():
            return False
        checkpoint.load(path, model, with_optimizer=False)
        return True

    def present(self):
        """Whether the run folder is still there (with its lock file and checkpoints/):
        a folder deleted mid-run must not be silently written again."""
        return (self.path / ".lock").is_file() and self.checkpoints.is_dir()

    def require(self):
        """ConfigError unless this is a run folder `trainer fit` wrote."""
        if not (self.path / "config.yaml").is_file():
            raise ConfigError(f"{self.path} is not a run folder (no config.yaml); give a "
                              f"folder `trainer fit` wrote")
        return self

    @contextlib.contextmanager
    def lock(self):
        """Hold the run folder's lock (``.lock``, fcntl.flock on an open file: the
        kernel drops it when the process dies, so a killed run never leaves it
        stuck). A second ``trainer fit`` on the same folder stops with ConfigError."""
        import fcntl

        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise WriteError(f"cannot write the run folder {self.path}: "
                             f"{exc.strerror or exc}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                raise ConfigError(f"run folder {self.path} is in use by another trainer "
                                  f"process (pid {holder}); wait for it to finish or stop "
                                  f"it, then resume with `trainer fit --resume "
                                  f"{self.path}`") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            for folder in (self.path, self.checkpoints):
                remove_temporaries(folder)  # of a process killed while writing
            yield self
        finally:
            os.close(fd)  # releases the lock

    def create(self, resolved_config, seed, argv, config_folder=None):
        """Start a new run here (the lock held); checkpoints of an earlier run in the
        same folder are removed so a resume can never pick them up."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        for old in (self.last, self.previous):
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
        self.write_config(resolved_config)
        self.meta = {"status": "running", "seed": seed, "command": argv,
                     "started": now(), "ended": None, "versions": versions(),
                     "final_metrics": {}}
        if config_folder is not None:
            self.meta["config_folder"] = str(Path(config_folder).resolve())
        self.write_meta()

    def reopen(self, resolved_config, argv, resumed):
        """Continue this run: status back to running, the resume noted in run.json
        (``resumes``: when, from where, what changed)."""
        self.meta = self.read_meta()
        self.write_config(resolved_config)
        self.meta.update(status="running", ended=None, versions=versions())
        self.meta.pop("error", None)
        self.meta.setdefault("resumes", []).append(
            {"at": now(), "command": argv, **resumed})
        self.write_meta()

    def read_meta(self):
        try:
            return json.loads((self.path / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def write_config(self, resolved_config):
        write_text(self.path / "config.yaml",
                   yaml.safe_dump(resolved_config, sort_keys=False, allow_unicode=True))

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

    @property
    def previous(self):
        """The checkpoint last.h5 replaced: what a resume falls back to when last.h5
        is damaged."""
        return self.checkpoints / "last.prev.h5"

    def load_config_text(self):
        return (self.path / "config.yaml").read_text(encoding="utf-8")


def command_line():
    name = Path(sys.argv[0]).name
    return ["trainer" if name == "__main__.py" else name] + sys.argv[1:]
