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

from trainer import __version__, runfiles
from trainer.errors import ConfigError
from trainer.fileio import WriteError, write_text


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
        self.checkpoints = self.path / runfiles.CHECKPOINTS
        self.meta = {}
        self._outputs = None  # the callback outputs recorded so far (runfiles.OUTPUTS)

    def present(self):
        """Whether the run folder is still there (with its lock file and checkpoints/):
        a folder deleted mid-run must not be silently written again."""
        return (self.path / runfiles.LOCK).is_file() and self.checkpoints.is_dir()

    def require(self):
        """ConfigError unless this is a run folder `trainer fit` wrote."""
        if not (self.path / runfiles.CONFIG).is_file():
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
            fd = os.open(self.path / runfiles.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
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
            for tmp in runfiles.temporaries(self.path):  # of a process killed mid-write
                with contextlib.suppress(OSError):
                    tmp.unlink()
            yield self
        finally:
            os.close(fd)  # releases the lock

    def claim(self, force=False):
        """Before a new run starts here: refuse a folder holding a run (unless
        ``force``) or files trainer did not write (runfiles.check_new); then mark it as
        a run folder. Call before ``lock``."""
        runfiles.check_new(self.path, force)
        try:
            runfiles.start(self.path)
        except OSError as exc:
            raise WriteError(f"cannot write the run folder {self.path}: "
                             f"{exc.strerror or exc}") from None
        return self

    def create(self, resolved_config, seed, argv, config_folder=None):
        """Start a new run here (the lock held, ``claim`` passed): what an earlier run
        wrote here is removed first (``fit --force``), so nothing of it mixes in."""
        runfiles.remove_run(self.path)
        self._outputs = None
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.write_config(resolved_config)
        self.meta = self.new_meta(seed, argv, config_folder)
        self.write_meta()

    @staticmethod
    def new_meta(seed, argv, config_folder=None):
        meta = {"status": "running", "seed": seed, "command": argv, "started": now(),
                "ended": None, "versions": versions(), "final_metrics": {}}
        if config_folder is not None:
            meta["config_folder"] = str(Path(config_folder).resolve())
        return meta

    def record(self, path):
        """Note a callback's file (a path in this folder) in runfiles.OUTPUTS before it
        is first written, so ``fit --force`` knows it as the run's."""
        rel = Path(os.path.relpath(path, self.path)).as_posix()
        if self._outputs is None:
            self._outputs = set(runfiles.recorded(self.path))
        if rel not in self._outputs:
            runfiles.start(self.path)  # (a run of an older trainer has no OUTPUTS yet)
            with open(self.path / runfiles.OUTPUTS, "a", encoding="utf-8") as f:
                f.write(rel + "\n")
                f.flush()
                os.fsync(f.fileno())
            self._outputs.add(rel)
        return path

    def reopen(self, resolved_config, argv, resumed, fresh=None):
        """Continue this run: status back to running, the resume noted in run.json
        (``resumes``: when, from where, what changed). ``fresh``: the run.json of a new
        run, for what a run killed before writing its run.json lacks."""
        self.meta = {**(fresh or {}), **self.read_meta()}
        self.write_config(resolved_config)
        self.meta.update(status="running", ended=None, versions=versions())
        self.meta.pop("error", None)
        self.meta.setdefault("resumes", []).append(
            {"at": now(), "command": argv, **resumed})
        self.write_meta()

    def read_meta(self):
        try:
            return json.loads((self.path / runfiles.META).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def write_config(self, resolved_config):
        write_text(self.path / runfiles.CONFIG,
                   yaml.safe_dump(resolved_config, sort_keys=False, allow_unicode=True))

    def write_meta(self):
        write_text(self.path / runfiles.META, json.dumps(self.meta, indent=2) + "\n")

    def finish(self, status, metrics=None, error=None):
        if not self.meta:  # stopped before create/reopen: nothing of the run to record
            return
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
        write_text(self.path / runfiles.HISTORY, buf.getvalue())

    @property
    def last(self):
        return self.path / runfiles.LAST

    @property
    def previous(self):
        """The checkpoint last.h5 replaced: what a resume falls back to when last.h5
        is damaged."""
        return self.path / runfiles.PREVIOUS

    @property
    def best(self):
        return self.path / runfiles.BEST

    @property
    def corrupt(self):
        """Where a damaged last.h5 is set aside."""
        return self.path / runfiles.CORRUPT

    def load_config_text(self):
        return (self.path / runfiles.CONFIG).read_text(encoding="utf-8")


def command_line():
    name = Path(sys.argv[0]).name
    return ["trainer" if name == "__main__.py" else name] + sys.argv[1:]
