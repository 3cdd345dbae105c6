"""Writes into a run folder: atomic (a temporary file in the same folder, fsync, rename,
fsync folder) and confined to the folder.

A reader (or a process killed at any instant) sees either the old file or the new
one, never a half-written one. ``keep_previous`` also keeps the file being replaced
under a second name, itself replaced atomically (a hard link, so the target never
goes missing).

``confined`` is the one gate of every write into a run folder (``root``): the path's
real location, every symlink on the way resolved (the file's own too), must stay
inside the folder's, so a link such as ``checkpoints -> /elsewhere`` never carries a
write out of it. The rename replaces a final symlink instead of following it, and
appends open with O_NOFOLLOW.
"""

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

from trainer.errors import DataError, TrainerError


class WriteError(TrainerError):
    """A run file could not be written (full disk, read-only or deleted run folder);
    the checkpoint written before stays intact."""

    exit_code = 6


#: errno values that mean "this folder cannot be written", not a bug of ours
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                errno.EFBIG, errno.EIO}


def confined(path, root):
    """``path`` (a Path) if its real location stays inside the folder ``root``, else a
    DataError (exit 3: a damaged run folder). Resolved at each write, not once."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise DataError(f"{path} leads outside the run folder {root} (to {real}): trainer "
                        f"writes only inside its run folder; remove the symlink that "
                        f"leads out of it (or start a new run folder)")
    return Path(path)


def check_links(root):
    """DataError unless every symlink inside the folder ``root`` (at any depth) stays
    inside it: checked before a run writes anything there."""
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            entry = os.path.join(folder, name)
            if os.path.islink(entry):
                confined(entry, root)


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
def atomic_path(path, keep_previous=None, root=None):
    """Yield a temporary path; on success it replaces ``path`` atomically.

    With ``keep_previous`` (a path in the same folder), the file ``path`` held
    before is kept there. With ``root`` (the run folder), both must stay inside it
    (``confined``).
    """
    path = Path(path)
    if root is not None:
        for p in (path, keep_previous):
            if p is not None:
                confined(p, root)
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


def write_text(path, text, root=None):
    with atomic_path(path, root=root) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def append_text(path, text, root=None):
    """Add ``text`` at the end of ``path`` (created if missing), flushed; a final
    symlink is not followed (O_NOFOLLOW), and with ``root`` the path is ``confined``."""
    if root is not None:
        confined(path, root)
    with open(path, "a", encoding="utf-8", newline="", opener=_no_follow) as f:
        f.write(text)
        f.flush()


def _no_follow(path, flags):
    return os.open(path, flags | os.O_NOFOLLOW, 0o666)


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"))


def regular_file(path, label, error=None):
    """``path`` if it is a regular file (a symlink to one is fine); else ``error``
    (DataError by default) naming ``label``: a device such as /dev/zero never ends,
    a FIFO blocks the reader. Checked before opening; a missing file passes through
    as FileNotFoundError."""
    if error is None:
        error = DataError
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        real = os.path.realpath(path)
        link = f" (a link to {real})" if real != os.path.abspath(path) else ""
        raise error(f"{label}: {path}{link} is {kind}, not a regular file; refused before "
                    f"reading")
    return path
