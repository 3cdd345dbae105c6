"""What the benchmark scripts record about the machine beside their numbers: the CPU
model and SIMD flags (from /proc/cpuinfo), CPUs, the 1-minute load average, Python,
and the date. A table is only comparable with another from the same machine and a
quiet load; these fields say which machine and how loaded.
"""

import os
import platform
import time
from pathlib import Path

# the /proc/cpuinfo flags that say which vector instructions BLAS and Numba may use
SIMD_PREFIXES = ("sse", "ssse3", "avx", "fma", "f16c", "amx", "neon", "asimd", "sve")


def cpuinfo(text=None):
    """(CPU model, SIMD flags in the order /proc/cpuinfo lists them); (None, []) when
    the file is missing (not Linux) or names neither."""
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None, []
    model, flags = None, []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if model is None and key in ("model name", "Model", "cpu model"):
            model = value.strip() or None
        if not flags and key in ("flags", "Features"):
            flags = [f for f in value.split() if f.startswith(SIMD_PREFIXES)]
    return model or platform.processor() or None, flags


def loadavg():
    """The 1-minute load average (other work on a shared machine shows here)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def describe():
    model, simd = cpuinfo()
    return {"cpu_model": model, "simd": simd, "cpus": os.cpu_count(),
            "machine": platform.machine(), "python": platform.python_version(),
            "loadavg": loadavg(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
