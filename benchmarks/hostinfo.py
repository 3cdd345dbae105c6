"""What the benchmark scripts record about the machine beside their numbers: the CPU
model and SIMD flags (from /proc/cpuinfo), CPUs, the BLAS NumPy runs on and the kernel
it picked for this CPU (threadpoolctl when installed, else OpenBLAS asked directly),
the 1-minute load average, Python, and the date. A table is only comparable with
another from the same machine and a quiet load; these fields say which machine and
how loaded.
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


def blas():
    """NumPy's BLAS: {"name", "version", "kernel", "coretype_env"} — kernel is the
    code path a DYNAMIC_ARCH OpenBLAS runs on this CPU (e.g. SkylakeX with AVX-512,
    Haswell with AVX2), which OPENBLAS_CORETYPE (``coretype_env``) overrides; None
    fields where neither threadpoolctl nor the library itself says."""
    import numpy as np

    forced = os.environ.get("OPENBLAS_CORETYPE")
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        for info in threadpool_info():
            if info.get("user_api") == "blas":
                return {"name": info.get("internal_api"), "version": info.get("version"),
                        "kernel": info.get("architecture"), "coretype_env": forced}
    config = getattr(np, "__config__", None)
    dep = (getattr(config, "CONFIG", {}) or {}).get("Build Dependencies", {}).get("blas", {})
    return {"name": dep.get("name"), "version": dep.get("version"),
            "kernel": _openblas_corename(), "coretype_env": forced}


def _openblas_corename():
    """The kernel name the loaded OpenBLAS reports (``openblas_get_corename``)."""
    import ctypes

    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({ln.split()[-1] for ln in maps if "openblas" in ln.lower()})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_get_corename64_", "openblas_get_corename64_",
                     "openblas_get_corename"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                value = fn()
                return value.decode() if value else None
    return None


def summary_line(meta):
    """One line naming the machine for a printed table."""
    b = meta.get("blas") or {}
    blas_text = " ".join(str(v) for v in (b.get("name"), b.get("version")) if v) or "?"
    return (f"machine: {meta.get('cpu_model') or '?'}, {meta.get('cpus')} CPUs; SIMD: "
            f"{' '.join(meta.get('simd') or []) or '?'}; BLAS: {blas_text}, kernel "
            f"{b.get('kernel') or '?'}"
            + (f" (OPENBLAS_CORETYPE={b['coretype_env']})" if b.get("coretype_env") else ""))


def describe():
    model, simd = cpuinfo()
    return {"cpu_model": model, "simd": simd, "cpus": os.cpu_count(), "blas": blas(),
            "machine": platform.machine(), "python": platform.python_version(),
            "loadavg": loadavg(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
