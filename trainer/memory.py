"""This machine's memory, and sizes written for people: what size checks compare
against before allocating (HDF5 reads in trainer.keras_io.h5limits, layer weights, CSV files);
"""

import os


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
