"""Batch-parallel work on Python threads, each with a single-threaded BLAS.

The convolution layers' work is im2col copies, GEMMs, bias sums and activation
masks. NumPy runs the copies and elementwise passes on one core, and OpenBLAS
splits a narrow GEMM (32 or 64 output channels) poorly across threads. Splitting the
*batch* instead — each worker thread running the whole chain on its own samples,
with BLAS pinned to one thread in that worker — keeps every core busy and each
chunk's column matrix in cache. NumPy releases the GIL in all of these calls.

Threads: ``TRAINER_NUM_THREADS``, else ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``
(what a user already sets to limit BLAS), else the CPUs this process may run on.
With one thread everything runs inline, in the calling thread, cut into the same
parts (``ranges``: by the shape and the machine's CPUs), so the numbers are the same
on any thread count.

BLAS: OpenBLAS is pinned to one thread for the
whole process (``pin_blas``, when a model is made) and every big product goes through
the engine's threads instead (``matmul`` here, the layers' own chunked loops). Mixing
the two does not work: OpenBLAS's threads spin for a while after each call and then
fight the engine's workers for the cores (measured: a 2-thread GEMM right after a
parallel region ran 2x slower), and ``openblas_set_num_threads_local`` changes every
thread's count in OpenBLAS 0.3.31. One thread model for the whole run also keeps its
numbers the same from the first step to a resumed one. With another BLAS nothing is
pinned (correct, only oversubscribed).
"""

import ctypes
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_lock = threading.Lock()
_pool = None
_threads = None
_blas = None
_pinned = False
_local = threading.local()


def num_threads():
    """The number of threads the engine uses (≥ 1)."""
    global _threads
    if _threads is None:
        for var in ("TRAINER_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            value = os.environ.get(var, "").strip()
            if value.isdigit() and int(value) > 0:
                _threads = int(value)
                break
        else:
            try:
                _threads = len(os.sched_getaffinity(0))
            except AttributeError:  # not Linux
                _threads = os.cpu_count() or 1
    return _threads


def set_num_threads(n):
    """Use ``n`` threads from now on (tests and benchmarks); restarts the pool."""
    global _threads, _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=True)
            _pool = None
        _threads = max(1, int(n))


def blas_threads():
    """(get, set) of the loaded OpenBLAS's global thread count, or None."""
    global _blas
    if _blas is None:
        from trainer.engine.kernels import blas

        _blas = blas.threads() or False
    return _blas or None


def _get_pool():
    global _pool
    with _lock:
        if _pool is None:
            blas_threads()
            _pool = ThreadPoolExecutor(max_workers=num_threads() - 1,
                                       thread_name_prefix="trainer-engine")
        return _pool


def split(n, parts):
    """``parts`` contiguous (start, stop) ranges covering range(n), sizes within 1."""
    parts = max(1, min(parts, n))
    base, extra = divmod(n, parts)
    bounds, start = [], 0
    for k in range(parts):
        stop = start + base + (k < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def inside():
    """Whether this thread is already running a part of some ``run`` (its work then
    runs inline: no nested pools)."""
    return getattr(_local, "active", False) or (
        threading.current_thread().name.startswith("trainer-engine"))


def _machine_parts():
    """The CPUs this process may run on, read once: the most parts a region is cut
    into (see ``ranges``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


#: the most parts ``run`` cuts a region into: the machine's CPUs, not the thread setting
MAX_PARTS = _machine_parts()


def ranges(n, min_items=2):
    """The contiguous parts ``run`` cuts range(n) into: fixed by ``n``, ``min_items``
    and the machine (``MAX_PARTS``), never by the number of threads. A BLAS product's
    last bits depend on where it is cut (OpenBLAS's Haswell kernels round a row of a
    32-row product and of a 64-row one differently), so parts chosen by the thread
    count made a run's numbers depend on it: a sweep trial on 1 thread (``--workers
    2``) did not reproduce the same config run alone on 2. Fewer threads run the same
    parts, several each."""
    return split(n, max(1, min(MAX_PARTS, n // min_items)))


def splits(n, min_items=2):
    """Whether ``run(fn, n, min_items)`` cuts the work into several parts (by the shape
    alone: a caller choosing its path by it computes the same numbers on any thread
    count)."""
    return len(ranges(n, min_items)) > 1


def run(fn, n, min_items=2):
    """Call ``fn(start, stop)`` over the parts ``ranges(n, min_items)`` and return their
    results in order. The parts go to the engine's threads in contiguous groups (one
    thread: all of them inline, in order; inside a part: the same, no nested pools).

    The calling thread runs the first group itself while the pool's workers run the
    others: one wake-up fewer per call (a futex wake costs ~0.1 ms on this kind of
    machine, and the recurrent layers split every time step), and the caller's core
    does work instead of sleeping. Which thread runs a part does not change its
    numbers."""
    return run_parts(fn, ranges(n, min_items))


def blocks(n, rows, min_items=2):
    """The parts ``ranges(n, min_items)``, each cut into contiguous blocks of at most
    ``rows`` rows (sizes within 1 inside a part): fixed by the shape and the machine,
    never by the thread count. For ``run_parts``: a thread's share runs as several
    smaller calls (their data stays in cache)."""
    out = []
    for a, b in ranges(n, min_items):
        out += [(a + s, a + e) for s, e in split(b - a, -(-(b - a) // max(1, rows)))]
    return out


def run_parts(fn, parts):
    """``run`` over the given contiguous (start, stop) parts, in contiguous groups
    over the engine's threads; their results in order."""
    if len(parts) == 1:
        return [fn(*parts[0])]
    threads = num_threads()
    if threads == 1 or inside():
        return [fn(a, b) for a, b in parts]
    pin_blas()

    def group(first, last):
        return [fn(a, b) for a, b in parts[first:last]]

    groups = split(len(parts), min(threads, len(parts)))
    pool = _get_pool()
    futures = [pool.submit(group, a, b) for a, b in groups[1:]]
    _local.active = True
    try:
        first = group(*groups[0])
    finally:
        _local.active = False
        # the workers may still be writing into shared buffers: never return (or
        # raise) before every part has ended
        rest = [f.exception() for f in futures]
    for future, error in zip(futures, rest):
        if error is not None:
            raise error
    return first + [r for f in futures for r in f.result()]


def pin_blas():
    """One OpenBLAS thread per call from now on (see the module doc); with one engine
    thread too: OpenBLAS's own threads cut a product where the engine would not (other
    last bits), and one engine thread means one thread."""
    global _pinned
    if _pinned:
        return
    _pinned = True
    blas = blas_threads()
    if blas is not None:
        blas[1](1)


def scratch(owner, name, shape, dtype):
    """A per-thread scratch array of ``shape``, reusing (a prefix of) one buffer kept
    per (``owner``, ``name``, dtype): each module passes its own ``owner`` (its
    ``__name__``), so two modules' buffers of the same name never alias."""
    store = _local.__dict__.setdefault("scratch", {})
    need = math.prod(shape)
    key = (owner, name, np.dtype(dtype))
    buf = store.get(key)
    if buf is None or buf.size < need:
        buf = np.empty(need, dtype)
        store[key] = buf
    return buf[:need].reshape(shape)


#: products smaller than this many multiply-adds run in one call
MATMUL_SPLIT = 1 << 22


def matmul(a, b, out=None):
    """``a @ b`` for 2-D arrays, split over the engine's threads when big: by rows of
    ``a`` (contiguous parts of the result) unless it has few rows and many columns,
    then by columns of ``b``.
    Each part is an exact sub-product, so the result does not depend on the split."""
    m, k = a.shape
    n = b.shape[1]
    if m * k * n < MATMUL_SPLIT:  # the common case (by the shape alone: see ``ranges``)
        return a @ b if out is None else np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((m, n), dtype=np.result_type(a, b))
    if m >= min(n, 64):
        run(lambda s, e: np.matmul(a[s:e], b, out=out[s:e]), m, min_items=16)
    else:
        def columns(s, e):
            out[:, s:e] = a @ b[:, s:e]
        run(columns, n, min_items=16)
    return out


_malloc_tuned = False

#: glibc's mallopt parameters and the values ``keep_freed_memory`` sets, in order
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -3, -4, -8
MALLOC_OPTIONS = (
    (M_MMAP_THRESHOLD, 32 << 20),  # the most glibc allows; moot once M_MMAP_MAX is 0
    (M_TRIM_THRESHOLD, 1 << 30),   # keep up to 1 GiB of free heap top mapped
    (M_MMAP_MAX, 0),               # no block of its own: big blocks come from the heap
    (M_ARENA_MAX, 1),              # the engine's threads too (see the docstring)
)


def keep_freed_memory():
    """Ask glibc's malloc to keep freed memory for reuse instead of handing it back to
    the OS at once. A training or inference step frees and reallocates the same
    multi-megabyte activations every step; by default glibc maps each block above a
    threshold fresh (mmap) and unmaps it on free, and trims the heap top as soon as
    128 KiB are free, so every step pays the page faults of touching new memory again
    (~15% of the classic CNN's step).

    - The trim threshold goes to 1 GiB: the heap's free top stays mapped.
    - No mmap'ed blocks at all (``M_MMAP_MAX`` 0), not just a higher threshold: the
      threshold cannot go above 32 MiB, and a ResNet50 stage's activations (16×56×56×256
      float32, 51 MB) or the classic CNN's first convolution on a 512-row inference
      slice (64 MB) are bigger. Every block now comes from the heap and is reused after
      ``free``. (If the heap cannot grow, glibc still falls back to mmap.)
    - One arena (``M_ARENA_MAX`` 1): a worker thread's own arena is made of heaps of
      at most 64 MiB; a bigger block is mmap'ed whatever ``M_MMAP_MAX`` says, and a
      heap that becomes wholly free is unmapped, so the engine's workers paid the page
      faults of their slices' activations again every call. With one arena every
      thread allocates from the main heap. Small blocks barely contend: each thread's
      tcache serves them, and Python's own objects do not use malloc's arenas.
      It applies to threads that have not allocated yet (the engine's pool starts
      after the first model is made).

    Measured (2 threads, issue 28, loaded machine): classic-CNN inference at batch
    1024 went from 1200-2800 minor page faults a call to none, median 1.2x faster
    (6 pairs of processes); a ResNet50 fine-tune step faulted nothing before or after
    (same speed, peak RSS 1970 MB against 2015); no RSS growth over 20 steps. Memory a
    run has freed stays with the process (as the trim threshold already made it for
    smaller blocks). No-op elsewhere than glibc."""
    global _malloc_tuned
    if _malloc_tuned:
        return
    _malloc_tuned = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    for param, value in MALLOC_OPTIONS:
        mallopt(param, value)
