"""MLP inference in one process (issue 28): benchmarks/run.py's mlp model
(784-512-512-10 relu, Dropout 0.2, softmax output) through ``predict_on_batch`` at
batch 1024, beside the same model exported by trainer's ONNX exporter in an ONNX
Runtime session (when ``onnxruntime`` is installed), interleaved (ours, ORT, ours,
ORT, ... in windows of ``--seconds``, a short pause after each ORT window: its
threads spin a while after a run), at 1 and 2 threads. Per pair: the ratio of
samples/s (ours / ORT: above 1 we are faster) and of CPU per batch (process CPU time;
ORT / ours: above 1 we use less); medians and ranges, with the 1-minute load.

``--profile``: where one thread's time goes on one 512-row block (as each thread of a
1024-row batch runs it): each GEMM, bias + relu, the softmax output, the block step by
step and compiled whole (dense_chain.compiled), a 1024-row ``predict_on_batch``;
thread CPU time, medians, GFLOP/s. Then, at two threads, a 1024-row batch's wall time
against its parallel region alone, one part alone, and the two parts side by side.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_mlp_infer.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_mlp_infer.py --profile
    python benchmarks/bench_mlp_infer.py --smoke --json out.json   # what the tests run
"""

import argparse
import importlib.util
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

BATCH = 1024


def load():
    return os.getloadavg()[0]


def our_model():
    """(model, input shape): run.py's mlp case."""
    import run as bench_run

    return bench_run.ours("mlp")


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


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def versus_ort(args):
    """One row per thread count: ours (and ORT's) samples/s, the ratios per pair."""
    import numpy as np

    from trainer.engine.kernels import parallel

    model, shape = our_model()
    x = np.random.default_rng(0).random((BATCH, *shape), dtype=np.float32)
    with_ort = not args.no_onnx and importlib.util.find_spec("onnxruntime") is not None
    rows = []
    for threads in args.threads:
        parallel.set_num_threads(threads)
        ours = lambda: model.predict_on_batch([x])  # noqa: E731
        theirs = None
        if with_ort:
            session = ort_session(model, threads)
            feeds = {model.input_names[0]: x}
            got, want = session.run(None, feeds)[0], ours()[0]
            assert np.allclose(got, want, rtol=1e-4, atol=1e-6), abs(got - want).max()
            theirs = lambda: session.run(None, feeds)  # noqa: E731
        for _ in range(args.warmup):
            ours()
            if theirs:
                theirs()
        pairs, loads = [], [load()]
        for _ in range(args.pairs):
            a = window(ours, args.seconds)
            b = None
            if theirs:
                time.sleep(0.05)
                b = window(theirs, args.seconds)
                time.sleep(0.05)
            pairs.append((a, b))
        loads.append(load())
        row = {"threads": threads, "pairs": len(pairs),
               "ours_samples_per_s": statistics.median(a[0] for a, _ in pairs),
               "load": [min(loads), max(loads)]}
        line = f"{threads} thread(s): ours {row['ours_samples_per_s']:.0f} samples/s"
        if theirs:
            rates = spread([a[0] / b[0] for a, b in pairs])
            cpus = spread([b[1] / a[1] for a, b in pairs])
            row.update(onnxruntime_samples_per_s=statistics.median(b[0] for _, b in pairs),
                       ours_vs_onnxruntime=rates, cpu_onnxruntime_vs_ours=cpus)
            line += (f", ORT {row['onnxruntime_samples_per_s']:.0f}; ours/ORT samples/s "
                     f"{rates['median']:.3f} ({rates['min']:.3f}-{rates['max']:.3f}), CPU "
                     f"per batch ORT/ours {cpus['median']:.3f} ({cpus['min']:.3f}-"
                     f"{cpus['max']:.3f}), {len(pairs)} pairs")
        print(line + f"; load {min(loads):.2f}-{max(loads):.2f}", flush=True)
        rows.append(row)
    return rows


def thread_cpu(fn, repeats):
    """Median thread CPU seconds of ``fn()`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t = time.thread_time()
        fn()
        times.append(time.thread_time() - t)
    return statistics.median(times)


def profile(args):
    """{part: (µs, GFLOP/s or None)} of one thread's 512-row block (as each thread of a
    1024-row batch runs it), step by step and compiled whole."""
    import numpy as np

    from trainer.engine import fusion
    from trainer.engine.kernels import dense_chain, fused, parallel

    parallel.set_num_threads(1)
    model, shape = our_model()
    rng = np.random.default_rng(0)
    rows = BATCH // 2
    x = rng.random((rows, *shape), dtype=np.float32)
    xb = rng.random((BATCH, *shape), dtype=np.float32)
    dense = [layer for layer in model.layers if "kernel" in layer.params]
    Ws = [d.params["kernel"] for d in dense]
    bs = [d.params["bias"] for d in dense]
    h1 = np.maximum(x @ Ws[0] + bs[0], 0)
    h2 = np.maximum(h1 @ Ws[1] + bs[1], 0)
    z1 = x @ Ws[0]
    needed = [False] * len(model.graph.nodes)
    steps = [s for s in (layer.inference_step(False) for layer in model.layers)
             if s is not dense_chain.IDENTITY]
    blocks, spans = dense_chain.layout(rows)

    def step_by_step():
        y = x
        for step in steps:
            y = step(y)

    parts = {
        "gemm 784->512": (lambda: x @ Ws[0], 2 * rows * 784 * 512),
        "gemm 512->512": (lambda: h1 @ Ws[1], 2 * rows * 512 * 512),
        "gemm 512->10": (lambda: h2 @ Ws[2], 2 * rows * 512 * 10),
        "copy 512x512": (lambda: z1.copy(), 0),
        "copy + bias+relu 512x512": (lambda: fused.bias_act(z1.copy(), bs[0], True), 0),
        "softmax output 512->10": (lambda: dense_chain._softmax(h2, Ws[2], bs[2]), 0),
        "block step by step": (step_by_step, 0),
        "block compiled whole": (lambda: dense_chain.compiled(x, steps, blocks, spans), 0),
        "predict_on_batch 1024": (lambda: model.predict_on_batch([xb]), 0),
        "fusion.plan": (lambda: fusion.plan(model.graph, False, needed), 0),
    }
    for fn, _ in parts.values():
        for _ in range(3):
            fn()
    print(f"one thread, thread CPU time, median of {args.repeats}; load {load():.2f}")
    out = {}
    for name, (fn, flops) in parts.items():
        t = thread_cpu(fn, args.repeats)
        out[name] = {"us": t * 1e6, "gflops": flops / t / 1e9 if flops else None}
        rate = f", {flops / t / 1e9:.0f} GFLOP/s" if flops else ""
        print(f"  {name:32} {t * 1e6:8.0f} us{rate}")
    flops = 2 * BATCH * (784 * 512 + 512 * 512 + 512 * 10)
    whole = out["predict_on_batch 1024"]["us"] * 1e-6
    print(f"  predict_on_batch 1024: {flops / whole / 1e9:.0f} GFLOP/s of the model's "
          f"{flops / 1e9:.2f} GFLOP")
    return out


def timeline(args):
    """Two threads: a 1024-row ``predict_on_batch`` (one compiled parallel region of two
    512-row parts) against the region alone, one part alone in this thread, and the
    two parts on two Python threads started together (each part's wall time beside
    the other's: what sharing the machine costs a part)."""
    import numpy as np

    from trainer.engine.kernels import dense_chain_kernels, parallel

    parallel.set_num_threads(2)
    model, shape = our_model()
    x = np.random.default_rng(0).random((BATCH, *shape), dtype=np.float32)
    seen = {}
    region = dense_chain_kernels.chain_parts
    dense_chain_kernels.chain_parts = lambda *a: seen.setdefault("args", a) and region(*a)
    try:
        model.predict_on_batch([x])
    finally:
        dense_chain_kernels.chain_parts = region
    if "args" not in seen:
        print("two threads: the MLP's chain did not run compiled here (no timeline)")
        return {}
    spans = seen["args"][-1]
    serial = seen["args"][:-1]

    def part(p):
        dense_chain_kernels.chain_blocks(*serial, spans[p, 0], spans[p, 1])

    def wall(fn):
        def timed():
            t = time.perf_counter()
            fn()
            return time.perf_counter() - t
        return timed

    rows = {"wall": [], "parallel region": [], "one part alone": []}
    calls = {"wall": wall(lambda: model.predict_on_batch([x])),
             "parallel region": wall(lambda: region(*seen["args"])),
             "one part alone": wall(lambda: part(0))}
    for _ in range(max(1, args.repeats // 5)):  # rounds of consecutive calls of each
        for key, fn in calls.items():
            for _ in range(args.warmup):
                fn()
            rows[key] += [fn() for _ in range(10)]
    barrier = threading.Barrier(2)
    marks = {}

    def beside(p):
        for r in range(args.repeats * 2):
            barrier.wait()
            t = time.perf_counter()
            part(p)
            marks[p, r] = (t, time.perf_counter())

    threads = [threading.Thread(target=beside, args=(p,)) for p in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reps = range(args.repeats * 2)
    rows["part 0 beside part 1"] = [marks[0, r][1] - marks[0, r][0] for r in reps]
    rows["part 1 beside part 0"] = [marks[1, r][1] - marks[1, r][0] for r in reps]
    rows["start skew"] = [abs(marks[0, r][0] - marks[1, r][0]) for r in reps]
    print(f"two threads, one 1024-row predict_on_batch and its parts (each in rounds of "
          f"10 calls in a row), medians (µs); load {load():.2f}")
    out = {}
    for key, values in rows.items():
        values = sorted(values)
        out[key] = {"median_us": statistics.median(values) * 1e6,
                    "p10_us": values[len(values) // 10] * 1e6,
                    "p90_us": values[len(values) * 9 // 10] * 1e6}
        print(f"  {key:32} {out[key]['median_us']:7.0f}  (p10 {out[key]['p10_us']:.0f}, "
              f"p90 {out[key]['p90_us']:.0f})")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-onnx", action="store_true", help="ours alone")
    parser.add_argument("--json", help="write the results and the machine here")
    parser.add_argument("--smoke", action="store_true", help="one short pair, few repeats")
    args = parser.parse_args()
    if args.smoke:
        args.pairs, args.seconds, args.repeats, args.warmup = 1, 0.02, 2, 1
    result = {}
    if args.profile:
        result["profile"] = profile(args)
        result["timeline"] = timeline(args)
    else:
        result["rows"] = versus_ort(args)
    if args.json:
        from hostinfo import describe

        result["meta"] = {**describe(), "smoke": args.smoke, "pairs": args.pairs,
                          "seconds": args.seconds, "repeats": args.repeats}
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
