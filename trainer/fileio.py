"""Atomic file writes: a temporary file in the same folder, fsync, rename, fsync folder.

A reader (or a process killed at any instant) sees either the old file or the new
one, never a half-written one. ``keep_previous`` also keeps the file being replaced
under a second name, itself replaced atomically (a hard link, so the target never
goes missing).
"""

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from trainer.errors import TrainerError


class WriteError(TrainerError):
    """A run file could not be written (full disk, read-only or deleted run folder);
    the checkpoint written before stays intact."""

    exit_code = 6


#: errno values that mean "this folder cannot be written", not a bug of ours
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                errno.EFBIG, errno.EIO}


def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _mode(path):
    """The file's current mode, else what the umask gives a new file (mkstemp's 0600
    would make run files private)."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _keep(path, previous):
    """Make ``previous`` name the current ``path`` (atomically replacing it)."""
    if not path.exists():
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{previous.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.unlink(tmp)
        try:
            os.link(path, tmp)
        except OSError:  # a file system without hard links
            import shutil
            shutil.copyfile(path, tmp)
        os.replace(tmp, previous)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path, keep_previous=None):
    """Yield a temporary path; on success it replaces ``path`` atomically.

    With ``keep_previous`` (a path in the same folder), the file ``path`` held
    before is kept there.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, _mode(path))
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if keep_previous is not None:
            _keep(path, Path(keep_previous))
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        _discard(tmp)
        # ENOENT: our own temporary file or its folder vanished mid-write (a folder
        # deleted under us and perhaps recreated by a concurrent write since)
        if not path.parent.is_dir() or exc.errno == errno.ENOENT:
            raise WriteError(f"could not write {path}: its folder was deleted or moved "
                             f"while trainer was writing it") from None
        raise WriteError(f"could not write {path}: {exc.strerror or exc}; "
                         f"the previous version of the file is kept") from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp):
    if tmp is not None:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def write_text(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
