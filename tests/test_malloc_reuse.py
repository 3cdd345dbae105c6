"""keep_freed_memory (issue 28): big arrays freed and allocated again, step after step,
reuse the same memory instead of being mapped and page-faulted in afresh — in the main
thread and in a worker thread (whose own malloc arena would mmap any block above its
64 MiB heaps). Counted as minor page faults in a fresh process (mallopt is
process-wide), with NumPy's huge-page advice off so a fault is one 4 KiB page."""

import json
import platform
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import json, resource, sys, threading
    import numpy as np
    from trainer.engine.kernels import parallel

    core = getattr(np, "_core", None) or np.core
    core.multiarray._set_madvise_hugepage(False)
    if sys.argv[1] == "tuned":
        parallel.keep_freed_memory()
    SIZES = (80 << 20, 51 << 20, 40 << 20)  # bytes: above glibc's mmap thresholds

    def faults():
        return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt

    def steps(out):
        for step in range(8):
            before = faults()
            arrays = [np.empty(n // 4, np.float32) for n in SIZES]
            for k, a in enumerate(arrays):
                a.fill(step + k)  # touch every page
            ok = all(float(a[::1024].min()) == step + k for k, a in enumerate(arrays))
            del arrays
            out.append((faults() - before, ok))
        zeros = np.zeros(SIZES[0] // 8)  # reused memory still reads as zeros
        out.append((0, not zeros.any()))

    main, worker = [], []
    steps(main)
    thread = threading.Thread(target=steps, args=(worker,))
    thread.start()
    thread.join()
    print(json.dumps({"main": main, "worker": worker}))
""")


def run_child(mode):
    proc = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or sys.platform != "linux",
                    reason="glibc's mallopt, Linux's per-thread fault counts")
def test_big_blocks_are_reused_without_new_page_faults_in_main_and_worker_threads():
    plain = run_child("plain")
    pages = sum((80 << 20, 51 << 20, 40 << 20)) // 4096
    # the measure itself: without the tuning, every step faults its arrays in again
    assert all(f > pages // 2 for f, _ in plain["main"][1:-1] + plain["worker"][1:-1])
    tuned = run_child("tuned")
    for thread in ("main", "worker"):
        steps = tuned[thread]
        assert all(ok for _, ok in steps)
        # the first two steps grow the heap (glibc places the blocks differently the
        # second time); from then on every step reuses it. Without one arena, the
        # worker's 80 MB block is mmap'ed and its heaps are unmapped every step.
        later = [f for f, _ in steps[2:-1]]
        assert max(later) < pages // 100, (thread, later)

