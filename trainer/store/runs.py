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


from trainer import __version__, runfiles
from trainer.errors import ConfigError, DataError
from trainer.fileio import WriteError, atomic_path, check_links, confined, write_text


#: what `fit` says of a run folder whose lock another process holds
IN_USE = "is in use by another trainer process"


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


def checkpoint_path(run_dir, name):
    """The checkpoint file ``--checkpoint NAME`` means for a run folder: an absolute
    path as given; a relative one in the run's ``checkpoints/``, then the run folder,
    then the current folder (``--checkpoint best.h5`` is the run's best.h5). A name
    found nowhere is a DataError naming where it was looked for."""
    name = Path(name)
    if name.is_absolute():
        return name
    places = ([Path(run_dir) / "checkpoints", Path(run_dir)] if run_dir else []) + [Path()]
    for folder in places:
        if (folder / name).is_file():
            return folder / name
    where = ", ".join(f"{p}/" if str(p) != "." else "the current folder" for p in places)
    raise DataError(f"checkpoint not found: {name} (looked in {where})")


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

    def save_best(self, model):
        """checkpoints/best.h5: weights and optimizer state of the best epoch so far."""
        from trainer.store import checkpoint

        checkpoint.save(self.checkpoints / "best.h5", model, root=self.path)

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
        stuck). A second ``trainer fit`` on the same folder stops with ConfigError.
        The file is removed when the lock is given back (a killed process leaves it,
        unlocked and harmless)."""
        fd = self._acquire()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            check_links(self.path)  # before anything is written or removed
            for tmp in runfiles.temporaries(self.path):  # of a process killed mid-write
                with contextlib.suppress(OSError):
                    tmp.unlink()
            yield self
        finally:
            with contextlib.suppress(OSError):  # before closing: still ours to remove
                (self.path / runfiles.LOCK).unlink()
            os.close(fd)  # releases the lock

    def _acquire(self):
        """Open and flock ``.lock``; the descriptor. A holder that removed the file
        (its run ended) between our open and flock leaves us a lock on a deleted
        file, so the lock counts only while the path still names the file we hold."""
        import fcntl

        while True:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                lock = confined(self.path / runfiles.LOCK, self.path)
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise WriteError(f"cannot write the run folder {self.path}: "
                                 f"{exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise ConfigError(f"run folder {self.path} {IN_USE} (pid {holder}); wait "
                                  f"for it to finish or stop it, then resume with `trainer "
                                  f"fit --resume {self.path}`") from None
            try:
                same = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)  # the file we locked was removed: take the new one

    def holder(self):
        """Who holds the folder's lock: the pid its holder wrote into ``.lock`` ("?" if
        it wrote none yet), or None when no process holds it. Looks with a shared lock
        given back at once, and removes nothing (a ``fit`` taking the lock in that very
        moment is told the folder is in use, as if the looker were a run)."""
        import fcntl

        try:
            fd = os.open(self.path / runfiles.LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:  # no lock file (or not one trainer made): nobody holds it
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

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
        for old in (self.last, self.previous, self.final):
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
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
        with contextlib.suppress(FileNotFoundError):
            self.final.unlink()  # the model of the run's earlier end, not of this one
        self.meta.update(status="running", ended=None, versions=versions())
        self.meta.pop("error", None)
        self.meta.setdefault("resumes", []).append(
            {"at": now(), "command": argv, **resumed})
        self.write_meta()

    def read_meta(self):
        """run.json as a mapping ({} when there is none yet); DataError when it is
        damaged (not JSON, or JSON that is not an object)."""
        return read_run_json(self.path / runfiles.META)

    def write_config(self, resolved_config):
        from trainer.config.loader import dump_text

        write_text(self.path / runfiles.CONFIG,
                   dump_text(resolved_config, sort_keys=False, allow_unicode=True),
                   root=self.path)

    def write_meta(self):
        write_text(self.path / runfiles.META, json.dumps(self.meta, indent=2) + "\n",
                   root=self.path)

    def write_array(self, name, array):
        """``name`` (a .npy file in the run folder), written atomically."""
        import numpy as np

        with atomic_path(self.path / name, root=self.path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, array, allow_pickle=False)

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
        write_text(self.path / runfiles.HISTORY, buf.getvalue(), root=self.path)

    @property
    def last(self):
        return self.path / runfiles.LAST

    @property
    def final(self):
        """The run's final model: the weights Keras's model holds once fit returned
        (EarlyStopping's best ones when it restored them), with the preprocessing
        statistics; written when the run completes."""
        return self.path / runfiles.FINAL

    def model_file(self):
        """The checkpoint that evaluate, predict and export use by default: final.h5
        of a completed run, else last.h5 (a run stopped early, or older than final.h5)."""
        if self.final.is_file() and self.read_meta().get("status") == "completed":
            return self.final
        return self.last

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


def read_run_json(path):
    """A run.json file as a mapping: {} when missing, DataError (a damaged run folder,
    exit 3) when it is not JSON or JSON that is not an object."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the run's record ({exc}); the run folder "
                        f"is damaged") from None
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise DataError(f"{path}: not JSON ({exc}); the run folder is damaged") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object (the run's record), got "
                        f"{type(meta).__name__}; the run folder is damaged")
    return meta


def command_line():
    name = Path(sys.argv[0]).name
    return ["trainer" if name == "__main__.py" else name] + sys.argv[1:]
