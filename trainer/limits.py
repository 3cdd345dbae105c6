"""This machine's memory, and sizes written for people: what size checks compare
against before allocating (HDF5 reads in trainer.h5limits, layer weights, CSV files);
and ``regular_file``, the check every file a command reads passes before it is opened."""

import os
import stat


def memory_bytes():
    """Physical memory of this machine (a generous bound if it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def human_size(n):
    """``3.5 EiB``, ``512 bytes``."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"))


def regular_file(path, label, error=None):
    """``path`` if it is a regular file (a symlink to one is fine); else ``error``
    (DataError by default) naming ``label``: a device such as /dev/zero never ends,
    a FIFO blocks the reader. Checked before opening; a missing file passes through
    as FileNotFoundError."""
    if error is None:
        from trainer.errors import DataError as error
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        real = os.path.realpath(path)
        link = f" (a link to {real})" if real != os.path.abspath(path) else ""
        raise error(f"{label}: {path}{link} is {kind}, not a regular file; refused before "
                    f"reading")
    return path
