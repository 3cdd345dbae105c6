"""MLP inference in one process (issue 28): benchmarks/run.py's mlp model
(784-512-512-10 relu, Dropout 0.2, softmax output) through ``predict_on_batch`` at
batch 1024, beside the same model exported by trainer's ONNX exporter in an ONNX
Runtime session, interleaved (ours, ORT, ours, ORT, ... in windows of ``--seconds``),
at 1 and 2 threads. Per pair: the ratio of samples/s (ours / ORT: above 1 we are
faster) and of CPU per batch (process CPU time; ORT / ours: above 1 we use less);
medians and ranges, with the 1-minute load.

``--profile``: where one thread's time goes on one 512-row slice (as each thread of a
1024-row batch runs it): each GEMM, bias + relu, the softmax output, the slice
through ``Graph.forward``, a 1024-row ``predict_on_batch``; thread CPU time, medians,
GFLOP/s; and the core's FMA peak (a register-only Numba loop).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_mlp_infer.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_mlp_infer.py --profile
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

BATCH = 1024


def load():
    return os.getloadavg()[0]


def our_model():
    import run as bench_run

    model, shape = bench_run.ours("mlp")
    return model, shape


def ort_session(model, threads):
    import onnxruntime as ort

    from trainer.onnx_io.graph import build_proto

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(build_proto(model).SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def window(fn, seconds):
    """(samples/s, process CPU seconds per call) over one window of ``seconds``."""
    n, w0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
        fn()
        n += 1
        wall = time.perf_counter() - w0
        if wall >= seconds and n >= 3:
            break
    return n * BATCH / wall, (time.process_time() - c0) / n


def summary(name, values):
    return (f"{name} {statistics.median(values):.3f} "
            f"({min(values):.3f}-{max(values):.3f}, {len(values)} pairs)")


def versus_ort(args):
    import numpy as np

    from trainer.engine.kernels import parallel

    model, shape = our_model()
    x = np.random.default_rng(0).random((BATCH, *shape), dtype=np.float32)
    ref = model.predict_on_batch([x])[0]
    for threads in args.threads:
        parallel.set_num_threads(threads)
        session = ort_session(model, threads)
        feeds = {model.input_names[0]: x}
        got = session.run(None, feeds)[0]
        assert np.allclose(got, ref, rtol=1e-4, atol=1e-6), abs(got - ref).max()
        ours = lambda: model.predict_on_batch([x])  # noqa: E731
        theirs = lambda: session.run(None, feeds)  # noqa: E731
        for _ in range(5):
            ours(), theirs()
        rates, cpus, loads, raw = [], [], [load()], []
        for _ in range(args.pairs):
            a = window(ours, args.seconds)
            time.sleep(0.05)  # ORT's workers spin a while after a run
            b = window(theirs, args.seconds)
            time.sleep(0.05)
            rates.append(a[0] / b[0])
            cpus.append(b[1] / a[1])
            raw.append((a[0], b[0]))
        loads.append(load())
        print(f"{threads} thread(s): ours {statistics.median(r[0] for r in raw):.0f} "
              f"samples/s, ORT {statistics.median(r[1] for r in raw):.0f}; "
              + summary("ours/ORT samples/s", rates) + "; "
              + summary("CPU per batch ORT/ours", cpus)
              + f"; load {min(loads):.2f}-{max(loads):.2f}", flush=True)


def thread_cpu(fn, repeats):
    """Median thread CPU seconds of ``fn()`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t = time.thread_time()
        fn()
        times.append(time.thread_time() - t)
    return statistics.median(times)


def profile(args):
    import numpy as np

    from trainer.engine import fusion
    from trainer.engine.kernels import dense_chain, fused, parallel

    parallel.set_num_threads(1)
    model, shape = our_model()
    rng = np.random.default_rng(0)
    rows = BATCH // 2
    x = rng.random((rows, *shape), dtype=np.float32)
    xb = rng.random((BATCH, *shape), dtype=np.float32)
    dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
    Ws = [d.params["kernel"] for d in dense]
    bs = [d.params["bias"] for d in dense]
    h1 = np.maximum(x @ Ws[0] + bs[0], 0)
    h2 = np.maximum(h1 @ Ws[1] + bs[1], 0)
    z1, z2 = x @ Ws[0], h1 @ Ws[1]
    n = args.repeats
    parts = {
        "gemm 784->512": (lambda: x @ Ws[0], 2 * rows * 784 * 512),
        "gemm 512->512": (lambda: h1 @ Ws[1], 2 * rows * 512 * 512),
        "gemm 512->10": (lambda: h2 @ Ws[2], 2 * rows * 512 * 10),
        "bias+relu 512": (lambda: fused.bias_act(z1.copy(), bs[0], True), 0),
        "copy 512x512 (in the line above)": (lambda: z1.copy(), 0),
        "gemm+softmax 512->10": (lambda: dense_chain._softmax(h2, Ws[2], bs[2]), 0),
        "slice through Graph.forward": (
            lambda: model.graph.forward([x], training=False), 0),
        "predict_on_batch 1024 (1 thread)": (lambda: model.predict_on_batch([xb]), 0),
        "fusion.plan": (lambda: fusion.plan(model.graph, False,
                                            [False] * len(model.graph.nodes)), 0),
    }
    for fn, _ in parts.values():
        for _ in range(3):
            fn()
    print(f"one thread, thread CPU time, median of {n}; load {load():.2f}")
    for name, (fn, flops) in parts.items():
        t = thread_cpu(fn, n)
        rate = f", {flops / t / 1e9:.0f} GFLOP/s" if flops else ""
        print(f"  {name:36} {t * 1e6:8.0f} us{rate}")
    flops = 2 * BATCH * (784 * 512 + 512 * 512 + 512 * 10)
    t = thread_cpu(lambda: model.predict_on_batch([xb]), n)
    print(f"  predict_on_batch 1024: {flops / t / 1e9:.0f} GFLOP/s of the model's "
          f"{flops / 1e9:.2f} GFLOP")


def timeline(args):
    """Two threads: where a 1024-row ``predict_on_batch``'s wall time goes around its
    two 512-row slices (each ``Graph.forward`` timed in its own thread)."""
    import threading

    import numpy as np

    from trainer.engine.kernels import parallel

    parallel.set_num_threads(2)
    model, shape = our_model()
    x = np.random.default_rng(0).random((BATCH, *shape), dtype=np.float32)
    graph = model.graph
    forward = graph.forward
    marks = {}

    def timed(xs, training=False, for_loss=False):
        name = "caller" if threading.current_thread() is threading.main_thread() else "worker"
        start, cpu = time.perf_counter(), time.thread_time()
        out = forward(xs, training=training, for_loss=for_loss)
        marks[name] = (start, time.perf_counter(), time.thread_time() - cpu)
        return out

    graph.forward = timed
    try:
        for _ in range(10):
            model.predict_on_batch([x])
        rows = []
        for _ in range(args.repeats * 5):
            marks.clear()
            t0 = time.perf_counter()
            model.predict_on_batch([x])
            t1 = time.perf_counter()
            (cs, ce, cc), (ws, we, wc) = marks["caller"], marks["worker"]
            rows.append({"wall": t1 - t0, "caller starts": cs - t0,
                         "worker starts after the caller": ws - cs,
                         "caller's slice": ce - cs, "worker's slice": we - ws,
                         "caller's slice CPU": cc, "worker's slice CPU": wc,
                         "the join after both ended": t1 - max(ce, we)})
    finally:
        graph.forward = forward
    print(f"two threads, one 1024-row predict_on_batch, medians of {len(rows)} (µs); "
          f"load {load():.2f}")
    for key in rows[0]:
        values = sorted(r[key] for r in rows)
        print(f"  {key:32} {statistics.median(values) * 1e6:7.0f}  "
              f"(p10 {values[len(values) // 10] * 1e6:.0f}, "
              f"p90 {values[len(values) * 9 // 10] * 1e6:.0f})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    if args.profile:
        profile(args)
        timeline(args)
    else:
        versus_ort(args)


if __name__ == "__main__":
    main()
