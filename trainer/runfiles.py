"""The names a run folder reserves for itself, in one place.

Every file trainer writes into a run folder under a fixed name is listed here;
``trainer.store.runs.Run`` takes its paths from this list, a callback may not name one of
them (``check_output``), and ``fit --run-dir DIR --force`` removes exactly these
(plus the callback outputs the run recorded in ``OUTPUTS``) and nothing else.
"""

import contextlib
import fnmatch
import glob
import json
import os
from pathlib import Path, PurePosixPath

from trainer.errors import ConfigError

CONFIG = "config.yaml"
META = "run.json"
HISTORY = "history.csv"
METRICS = "metrics.json"
VALIDATION_ROWS = "validation_rows.npy"
LOCK = ".lock"
#: the files callbacks wrote (one relative path a line), recorded before each is created
OUTPUTS = ".outputs"
CHECKPOINTS = "checkpoints"
LAST = f"{CHECKPOINTS}/last.h5"
PREVIOUS = f"{CHECKPOINTS}/last.prev.h5"
CORRUPT = f"{CHECKPOINTS}/last.corrupt.h5"
BEST = f"{CHECKPOINTS}/best.h5"
#: the run's final model (what Keras holds after fit: EarlyStopping's restored weights)
FINAL = f"{CHECKPOINTS}/final.h5"
#: a sweep's description of the trial in this folder: written by `trainer sweep`, kept
#: by --force (the sweep's ledger reads it)
TRIAL = "trial.json"

#: what `fit --run-dir DIR --force` removes: the run's own files
RUN_FILES = (CONFIG, META, HISTORY, METRICS, VALIDATION_ROWS, LOCK, OUTPUTS,
             LAST, PREVIOUS, CORRUPT, BEST, FINAL)
#: every reserved file name (relative to the run folder)
RESERVED = (*RUN_FILES, TRIAL)
#: temporary files of atomic writes (trainer.fileio), deleted when a run starts
TEMPORARY = ".*.tmp"


def parts(relative):
    """The path's components, without ``.``; ``relative`` is inside the run folder."""
    return PurePosixPath(str(relative).replace("\\", "/")).parts


def conflict(relative, is_folder=False):
    """The reserved name that the file (or folder) ``relative`` in the run folder
    would overwrite or stand in the way of, or None."""
    mine = tuple(p for p in parts(relative) if p != ".")
    for name in RESERVED:
        reserved = parts(name)
        if mine[:len(reserved)] == reserved:  # the file itself, or "inside" it
            return name
        if not is_folder and reserved[:len(mine)] == mine:  # a file where a folder is
            return name
    if mine and fnmatch.fnmatch(mine[-1], TEMPORARY):
        return f"{TEMPORARY} (temporary files, deleted when a run starts)"
    return None


def check_output(relative, key, where=None, is_folder=False):
    """ConfigError naming ``key`` (``callbacks[1].CSVLogger.filename``) if the file or
    folder ``relative`` would replace one of the run's own files."""
    if any(c in str(relative) for c in "\n\r\0"):  # (OUTPUTS holds one path a line)
        raise ConfigError(f"{key}: a file name may not hold a line break or NUL, got "
                          f"{str(relative)!r}", where=where)
    name = conflict(relative, is_folder)
    if name is not None:
        raise ConfigError(f"{key}: {str(relative)!r} would overwrite the run's own "
                          f"{name}; the run folder reserves {', '.join(RESERVED)} and "
                          f"{TEMPORARY}: choose another name", where=where)


# -- which files of a folder trainer wrote ----------------------------------------------
HEADER = "# trainer run folder: the files callbacks wrote here, one a line\n"


def is_run(folder):
    """Whether ``folder`` was started by `trainer fit` (it holds ``OUTPUTS``, created
    before anything else), or is a run of an older trainer (its run.json says so)."""
    folder = Path(folder)
    if (folder / OUTPUTS).is_file():
        return True
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "trainer" in (meta.get("versions") or {})


def recorded(folder):
    """The callback outputs ``OUTPUTS`` lists (relative paths; a line cut short by a
    kill is left out)."""
    try:
        text = (Path(folder) / OUTPUTS).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    lines = text.split("\n")[:-1]  # the last piece has no newline: cut short, or empty
    return [ln for ln in lines if ln and not ln.startswith("#") and conflict(ln) is None
            and ".." not in parts(ln) and not PurePosixPath(ln).is_absolute()]


def temporaries(folder, names=None):
    """Temporary files that atomic writes to ``names`` (default: the run's files and
    recorded outputs) left in ``folder`` when killed, and any in checkpoints/."""
    folder = Path(folder)
    names = [*RUN_FILES, *recorded(folder)] if names is None else names
    found = set()
    for name in names:
        p = PurePosixPath(name)
        found.update((folder / p.parent).glob(f".{glob.escape(p.name)}.*.tmp"))
    found.update((folder / CHECKPOINTS).glob(TEMPORARY))
    return sorted(p for p in found if p.is_file() and not p.is_symlink())


def written(folder):
    """Relative paths of the files in ``folder`` that trainer wrote: nothing unless it
    is a run folder; then the run's own files, the recorded callback outputs and the
    temporary files of writes to them."""
    folder = Path(folder)
    if not is_run(folder):
        return set()
    names = [*RESERVED, *recorded(folder)]
    real = folder.resolve()
    out = {n for n in names if (folder / n).is_file() and not (folder / n).is_symlink()
           and (folder / n).resolve().is_relative_to(real)}  # (not through a symlink)
    out.update(p.relative_to(folder).as_posix() for p in temporaries(folder))
    return out


def files_in(folder):
    """Every file (and symlink) under ``folder``, as relative paths; folders left out."""
    folder = Path(folder)
    out = set()
    for root, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            out.add(Path(root, name).relative_to(folder).as_posix())
    return out


def check_new(folder, force=False):
    """Before a new run goes into ``folder``: ConfigError if it holds files trainer did
    not write (never overwritten or deleted), or a run (unless ``force``)."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return
    if not folder.is_dir():
        raise ConfigError(f"--run-dir {folder} is not a folder")
    ours = written(folder)
    theirs = sorted(files_in(folder) - ours - {TRIAL})  # (fit never writes trial.json)
    if theirs:
        shown = ", ".join(theirs[:5]) + (f" and {len(theirs) - 5} more" if len(theirs) > 5
                                         else "")
        raise ConfigError(f"--run-dir {folder} holds files trainer did not write ({shown}); "
                          f"trainer never overwrites or deletes them: give a new or empty "
                          f"folder")
    content = ours - {LOCK, OUTPUTS, TRIAL} - {
        p.relative_to(folder).as_posix() for p in temporaries(folder)}
    if content and not force:
        status = _status(folder)
        raise ConfigError(f"--run-dir {folder} already holds a run{status}: continue it "
                          f"with `trainer fit --resume {folder}`, or give a new folder "
                          f"(--force deletes that run and starts a new one there)")


def _status(folder):
    try:
        meta = json.loads((Path(folder) / META).read_text(encoding="utf-8"))
        return f" ({meta['status']})" if isinstance(meta, dict) and "status" in meta else ""
    except (OSError, ValueError):
        return ""


def remove_run(folder):
    """Delete what an earlier run wrote in ``folder`` (its files, recorded outputs and
    temporaries; not .lock, which the caller holds, nor a sweep's trial.json), then the
    folders that leaves empty; OUTPUTS is emptied, not removed."""
    folder = Path(folder)
    for rel in sorted(written(folder) - {LOCK, TRIAL, OUTPUTS}):
        path = folder / rel
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        for parent in path.parents:
            if parent == folder or not parent.is_relative_to(folder):
                break
            with contextlib.suppress(OSError):
                parent.rmdir()  # only if empty
    (folder / OUTPUTS).write_text(HEADER, encoding="utf-8")  # (still a run folder)


def start(folder):
    """Mark ``folder`` as a run folder: create ``OUTPUTS`` (before any other file)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / OUTPUTS, "a", encoding="utf-8") as f:
        if f.tell() == 0:
            f.write(HEADER)
