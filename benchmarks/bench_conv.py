"""Winograd F(2×2,3×3) against the im2col path, in one process (issue 28).

A shared machine's load moves both paths alike only when they run side by side, so
this script times both in the same process, interleaved: im2col, Winograd, Winograd,
im2col, ... (``TRAINER_CONV_ALGO`` switched between calls; it is read on every
forward). Each timing is one window of ``--seconds`` after a warm-up call; the ratio
Winograd / im2col is taken per pair and its median and range reported, with the
1-minute load average around each pair.

Layers run Winograd forced (``winograd``); the model runs the engine's rule
(``auto``: Winograd where it wins). Cases: the four convolutions of the classic CNN
(configs/cifar_cnn.yaml) at their shapes, forward + backward at batch 128 (``train``)
and forward at batch 1024 (``infer``); the whole model's training step (batch 128)
and predict (batch 1024); and the share of the model's training step spent in its
convolution layers (forward and backward, timed around each call).

    python benchmarks/bench_conv.py                 # 2 threads, 5 pairs, 1 s windows
    python benchmarks/bench_conv.py --smoke --json out.json   # what the tests run
    python benchmarks/bench_conv.py --cases profile # where the cnn's time goes
    python benchmarks/bench_conv.py --cases direct  # direct convolution vs the old path
    python benchmarks/bench_conv.py --cases ort --threads 1   # predict vs ONNX Runtime

``--cases profile``: the classic CNN's training step (batch 128) and predict (batch
1024, as it runs and with the convolution chains off: each layer timed) on one thread (BLAS pinned to one thread too, so the parts add up to the step),
timed per layer (forward, backward) and per operation: every GEMM shape with its
GFLOP/s beside sgemm alone on the same shape, the im2col copies (``copyto``), pads,
bias + relu, relu's backward, the Winograd transforms and the direct convolution's
kernels. Times are CPU time of the
thread (``time.thread_time``): a loaded machine inflates them less than wall time.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

#: (name, input H×W×C, filters, padding) of the classic CNN's convolutions
LAYERS = [("conv1", (32, 32, 3), 32, "same"), ("conv2", (32, 32, 32), 32, "valid"),
          ("conv3", (15, 15, 32), 64, "same"), ("conv4", (15, 15, 64), 64, "valid")]
SMOKE = {"repeats": 1, "seconds": 0.02, "train_batch": 2, "infer_batch": 4}


def conv_step(shape, filters, padding, batch, train):
    import numpy as np

    from trainer.config.families import layers

    layer = layers.get({"Conv2D": {"filters": filters, "kernel_size": 3, "padding": padding,
                                   "activation": "relu"}})
    layer.build(shape, np.random.default_rng(0))
    layer.needs_input_grad = shape[-1] != 3  # the first layer: no input gradient
    x = np.random.default_rng(1).random((batch, *shape), dtype=np.float32)

    def step():
        y, back = layer.forward(x, train)
        if train:
            back(np.ones_like(y))
    return step


def model_step(batch, train):
    import numpy as np

    import run  # benchmarks/run.py: the same model as its cnn case

    model, shape = run.ours("cnn")
    rng = np.random.default_rng(0)
    x = rng.random((batch, *shape), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]
    if train:
        return (lambda: model.train_on_batch([x], [y])), model
    return (lambda: model.predict_on_batch([x])), model


def set_algo(algo):
    """``im2col``, ``winograd`` or ``auto`` (TRAINER_CONV_ALGO; direct convolution by its
    rule), or ``direct-off`` / ``direct-auto`` / ``direct-force`` (TRAINER_CONV_ALGO auto,
    TRAINER_CONV_DIRECT off / auto / force: trainer/engine/kernels/direct_conv.py)."""
    conv, _, direct = algo.partition("direct-")
    os.environ["TRAINER_CONV_ALGO"] = conv or "auto"
    os.environ["TRAINER_CONV_DIRECT"] = direct or "auto"


def timed(step, seconds, algo):
    set_algo(algo)
    step()  # warm-up (and the Numba compile the first time)
    n, start = 0, time.perf_counter()
    while True:
        step()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def loadavg():
    from hostinfo import loadavg as load

    return load()


def pairs(step, batch, args, new="winograd", old="im2col"):
    """Interleaved A/B windows: per pair (``old`` rate, ``new`` rate, load). ``new`` is
    ``winograd`` (forced, for single layers) or ``auto`` (the engine's rule) against
    ``old`` im2col; or a ``direct-*`` setting against ``direct-off`` (see ``set_algo``)."""
    out = []
    for r in range(args.repeats):
        order = (old, new) if r % 2 == 0 else (new, old)
        rates, load = {}, [loadavg()]
        for algo in order:
            rates[algo] = timed(step, args.seconds, algo) * batch
        load.append(loadavg())
        out.append((rates[old], rates[new], max(v or 0 for v in load)))
    return out


#: --cases direct: (case, mode, new setting) against direct-off (the old paths: im2col,
#: and Winograd at inference from 32 channels and in training from 64); the rule
#: (direct-auto) takes all four of the classic CNN's convolutions
DIRECT_CASES = [(name, mode, "direct-auto") for name in ("conv1", "conv2", "conv3", "conv4")
                for mode in ("train", "infer")] + [("cnn", "train", "direct-auto"),
                                                   ("cnn", "infer", "direct-auto")]


def direct_rows(args):
    """The direct convolution (old: ``direct-off``) per layer and for the whole model,
    interleaved in one process."""
    shapes = {name: (shape, filters, padding) for name, shape, filters, padding in LAYERS}
    rows = []
    for name, mode, new in DIRECT_CASES:
        batch = args.train_batch if mode == "train" else args.infer_batch
        if name == "cnn":
            step, _ = model_step(batch, mode == "train")
        else:
            step = conv_step(*shapes[name], batch, mode == "train")
        row = summarize(name, mode, batch, pairs(step, batch, args, new, "direct-off"))
        row["old"], row["new"] = row.pop("im2col"), row.pop("winograd")
        row["paths"] = ["direct-off", new]
        rows.append(row)
        print(json.dumps(rows[-1]), flush=True)
    return rows


def conv_share(step, model, args):
    """Share of a training step's time inside the model's Conv layers (per algo)."""
    from trainer.layers.conv import Conv

    spent = [0.0]

    def wrap(layer):
        forward = layer.forward

        def timed_forward(x, training):
            t = time.perf_counter()
            y, back = forward(x, training)
            spent[0] += time.perf_counter() - t

            def timed_back(dy):
                t = time.perf_counter()
                dx = back(dy)
                spent[0] += time.perf_counter() - t
                return dx
            return y, timed_back
        layer.forward = timed_forward

    for layer in model.layers if hasattr(model, "layers") else []:
        if isinstance(layer, Conv):
            wrap(layer)
    share = {}
    for algo in ("im2col", "auto"):
        set_algo(algo)
        step()
        spent[0], start, n = 0.0, time.perf_counter(), 0
        while time.perf_counter() - start < args.seconds or n == 0:
            step()
            n += 1
        share[algo] = spent[0] / (time.perf_counter() - start)
    return share


class Profiler:
    """Wraps layer forwards/backwards and named operations with CPU-time counters."""

    def __init__(self):
        self.spent, self.flops, self.undo = {}, {}, []

    def add(self, key, dt, flops=0):
        self.spent[key] = self.spent.get(key, 0.0) + dt
        self.flops[key] = self.flops.get(key, 0) + flops

    def wrap(self, owner, name, key=None, gemm=False):
        real = getattr(owner, name) if not isinstance(owner, dict) else owner[name]

        def timed(*a, **k):
            t = time.thread_time()
            out = real(*a, **k)
            dt = time.thread_time() - t
            if gemm:
                (m, kk), n = a[0].shape, a[1].shape[1]
                shape = f"gemm {m}x{kk}{'ᵀ' if not a[0].flags.c_contiguous else ''} · {kk}x{n}"
                self.add(shape, dt, 2 * m * kk * n)
            else:
                self.add(key or name, dt)
            return out
        if isinstance(owner, dict):
            owner[name] = timed
            self.undo.append(lambda: owner.__setitem__(name, real))
        else:
            setattr(owner, name, timed)
            self.undo.append(lambda: setattr(owner, name, real))

    def wrap_layer(self, layer, label):
        forward = layer.forward

        def timed_forward(x, training, **kw):
            t = time.thread_time()
            y, back = forward(x, training, **kw)
            self.add(f"{label} fwd", time.thread_time() - t)

            def timed_back(dy, via=back):
                t = time.thread_time()
                dx = via(dy)
                self.add(f"{label} bwd", time.thread_time() - t)
                return dx
            if hasattr(back, "preactivation"):  # a fused softmax + cross-entropy
                timed_back.preactivation = lambda dz: timed_back(dz, back.preactivation)
            return y, timed_back
        # the layer's own forward as the engine sees it (fusion.py's chains ask for it):
        # the profile times the path that runs unprofiled
        timed_forward.__func__ = getattr(forward, "__func__", None)
        layer.forward = timed_forward
        self.undo.append(lambda: delattr(layer, "forward"))

    def wrap_groups(self, graph):
        """Time the chains trainer/engine/fusion.py plans (which run as one step, not
        through the layers' forwards), labelled by their nodes."""
        from trainer.engine import fusion

        real = fusion.plan
        index = {id(node): k for k, node in enumerate(graph.nodes)}

        def plan(g, training, needed):
            groups, members = real(g, training, needed)
            if g is not graph:
                return groups, members
            timed = {}
            for k, group in groups.items():
                last = index[id(graph.producer[group.out])]
                label = " + ".join(f"{j:02d} {type(graph.nodes[j].layer).__name__}"
                                   for j in range(k, last + 1))

                def run(x, other, training, via=group.run, label=label):
                    t = time.thread_time()
                    out = via(x, other, training)
                    self.add(f"{label} (one step)", time.thread_time() - t)
                    return out
                timed[k] = fusion.Group(group.x, group.other, group.out, run,
                                        group.passes_mask, group.per_sample)
            return timed, members
        fusion.plan = plan
        self.undo.append(lambda: setattr(fusion, "plan", real))

    def restore(self):
        for undo in reversed(self.undo):
            undo()
        self.undo = []


def sgemm_alone(shape, seconds):
    """GFLOP/s of np.matmul alone on a profiled GEMM shape ("gemm MxK[ᵀ] · KxN")."""
    import numpy as np

    dims = shape.split()[1::2]
    m, k = (int(v.rstrip("ᵀ")) for v in dims[0].split("x"))
    n = int(dims[1].split("x")[1])
    a = np.random.default_rng(0).random((k, m) if "ᵀ" in dims[0] else (m, k), np.float32)
    a = a.T if "ᵀ" in dims[0] else a
    b, out = np.ones((k, n), np.float32), np.empty((m, n), np.float32)
    np.matmul(a, b, out=out)
    count, start = 0, time.thread_time()
    while time.thread_time() - start < seconds or count == 0:
        np.matmul(a, b, out=out)
        count += 1
    return 2 * m * k * n * count / (time.thread_time() - start) / 1e9


#: --cases profile's third row: inference with the convolution chains off (the layers
#: one by one, each timed: the per-layer breakdown the chains hide)
UNCHAINED = "infer, layers one by one"


def layer_flops(layer):
    """Floating-point operations of one sample through a Conv2D or Dense forward (2 a
    multiply-add), else 0."""
    import numpy as np

    name = type(layer).__name__
    if name == "Conv2D":
        kh, kw, c, f = layer.params["kernel"].shape
        return 2 * int(np.prod(layer.output_shape[:2])) * f * kh * kw * c
    if name == "Dense":
        return 2 * layer.params["kernel"].size
    return 0


def profile(args):
    """Per-layer and per-operation CPU time of the cnn's steps (module doc)."""
    import numpy as np

    import trainer.layers.conv as conv_layer
    from trainer.engine.kernels import direct_conv, fused, parallel, winograd_transforms

    parallel.set_num_threads(1)
    blas = parallel.blas_threads()
    if blas is not None:
        blas[1](1)
    from trainer.engine import fusion

    out = []
    for mode, batch in (("train", args.train_batch), ("infer", args.infer_batch),
                        (UNCHAINED, args.infer_batch)):
        step, model = model_step(batch, mode == "train")
        prof = Profiler()
        flops = {}
        for i, layer in enumerate(model.layers):
            prof.wrap_layer(layer, f"{i:02d} {type(layer).__name__}")
            flops[f"{i:02d} {type(layer).__name__}"] = layer_flops(layer) * batch
        prof.wrap_groups(model.graph)
        if mode == UNCHAINED:
            real_chain = fusion._conv_chain
            fusion._conv_chain = lambda *a: None
            prof.undo.append(lambda: setattr(fusion, "_conv_chain", real_chain))
        prof.wrap(np, "matmul", gemm=True)
        prof.wrap(np, "copyto", "im2col copy (copyto)")
        prof.wrap(conv_layer, "pad2d", "pad")
        prof.wrap(fused, "bias_act", "bias + relu")
        prof.wrap(fused, "relu_backward", "relu backward")
        kernels = winograd_transforms.kernels()
        for name in list(kernels):
            prof.wrap(kernels, name, f"winograd {name} transform")
        direct = direct_conv.kernels()
        prof.wrap(direct, "forward", "direct conv kernel (forward, dx)")
        prof.wrap(direct, "forward_chain", "direct conv kernel (chain of stages)")
        prof.wrap(direct, "weight_grad", "direct conv kernel (dW, db)")
        try:
            step()
            prof.spent.clear()
            prof.flops.clear()
            count, start = 0, time.thread_time()
            while time.thread_time() - start < args.seconds or count == 0:
                step()
                count += 1
            total = (time.thread_time() - start) / count
        finally:
            prof.restore()
        rows = {k: {"ms": v / count * 1e3} for k, v in prof.spent.items()}
        for k, row in rows.items():
            if prof.flops[k]:
                row["gflops"] = prof.flops[k] / prof.spent[k] / 1e9
                row["alone_gflops"] = sgemm_alone(k, min(args.seconds, 0.3))
            # a layer's (or a chain's: its layers') multiply-adds at the time it took
            work = sum(flops.get(part.removesuffix(" fwd").removesuffix(" (one step)"), 0)
                       for part in k.split(" + ")) if mode != "train" else 0
            if work:
                row["layer_gflops"] = work * count / prof.spent[k] / 1e9
        out.append({"mode": mode, "batch": batch, "step_ms": total * 1e3, "parts": rows})
        print(f"\n{mode} batch {batch}: {total * 1e3:.1f} ms a step (CPU time, 1 thread)")
        for k, row in sorted(rows.items()):
            rate = (f" {row['gflops']:6.0f} GFLOP/s (alone {row['alone_gflops']:.0f})"
                    if "gflops" in row else "")
            rate += f" {row['layer_gflops']:6.0f} GFLOP/s" if "layer_gflops" in row else ""
            print(f"  {k:34s} {row['ms']:8.2f} ms {row['ms'] / 1e3 / total:6.1%}{rate}")
    return out


def ort_rows(args):
    """The classic CNN's predict (batch ``--infer-batch``) against ONNX Runtime running
    the same model (trainer's ONNX exporter, benchmarks/run.py's session settings, the
    same ``--threads``) in this process, interleaved; and the convolution chains
    (trainer/engine/fusion.py) against the layers one by one. CPU time of the process
    on one thread (both run in the calling thread there), wall time on more."""
    import numpy as np

    import run  # benchmarks/run.py: the same model and ONNX Runtime session
    from trainer.engine import fusion

    step, model = model_step(args.infer_batch, False)
    steps = {"ours": step}
    real = fusion._conv_chain

    def unchained():
        fusion._conv_chain = lambda *a: None
        try:
            return step()
        finally:
            fusion._conv_chain = real
    steps["ours, layers one by one"] = unchained
    if run.have_onnxruntime():
        steps["onnxruntime"] = run.onnx_step("cnn", "infer", args.infer_batch, args.threads)
    clock = time.process_time if args.threads == 1 else time.perf_counter

    def window(fn):
        fn()
        n, start = 0, clock()
        while clock() - start < args.seconds or n == 0:
            fn()
            n += 1
        return n * args.infer_batch / (clock() - start)

    names, rates, loads = list(steps), {k: [] for k in steps}, []
    for r in range(args.repeats):
        load = [loadavg()]
        for name in (names if r % 2 == 0 else names[::-1]):
            rates[name].append(window(steps[name]))
        loads.append(max(load + [loadavg()]))
    rows = []
    for name in names[1:]:
        ratios = [a / b for a, b in zip(rates["ours"], rates[name])]
        rows.append({"case": "cnn", "mode": "infer", "batch": args.infer_batch,
                     "ours": statistics.median(rates["ours"]), "peer": name,
                     "peer_rate": statistics.median(rates[name]),
                     "ratio": statistics.median(ratios),
                     "ratio_range": [min(ratios), max(ratios)], "max_load": max(loads),
                     "clock": "process CPU time" if args.threads == 1 else "wall time"})
        print(json.dumps(rows[-1]), flush=True)
    np.testing.assert_allclose(model.predict_on_batch([np.zeros((2, 32, 32, 3),
                                                                np.float32)])[0].sum(
        axis=1), 1, rtol=1e-5)  # probabilities: the model ran, whatever the timing
    return rows


def summarize(name, mode, batch, results):
    ratios = [w / a for a, w, _ in results]
    return {"case": name, "mode": mode, "batch": batch,
            "im2col": statistics.median(a for a, _, _ in results),
            "winograd": statistics.median(w for _, w, _ in results),
            "ratio": statistics.median(ratios), "ratio_range": [min(ratios), max(ratios)],
            "max_load": max(load for _, _, load in results)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="pairs per case")
    parser.add_argument("--seconds", type=float, default=1.0, help="window per timing")
    parser.add_argument("--train-batch", type=int, default=128)
    parser.add_argument("--infer-batch", type=int, default=1024)
    parser.add_argument("--cases", default="layers,model",
                        help="layers,model,profile,direct,ort")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: runs, no verdict")
    parser.add_argument("--json", help="write the rows and the machine here")
    args = parser.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    os.environ["TRAINER_NUM_THREADS"] = str(args.threads)
    from hostinfo import describe

    from trainer.engine.kernels import parallel

    parallel.set_num_threads(args.threads)
    cases = args.cases.split(",")
    rows, shares = [], {}
    if "layers" in cases:
        for name, shape, filters, padding in LAYERS:
            for mode, batch in (("train", args.train_batch), ("infer", args.infer_batch)):
                step = conv_step(shape, filters, padding, batch, mode == "train")
                rows.append(summarize(name, mode, batch, pairs(step, batch, args)))
                print(json.dumps(rows[-1]), flush=True)
    if "model" in cases:
        for mode, batch in (("train", args.train_batch), ("infer", args.infer_batch)):
            step, model = model_step(batch, mode == "train")
            rows.append(summarize("cnn", mode, batch, pairs(step, batch, args, "auto")))
            print(json.dumps(rows[-1]), flush=True)
            if mode == "train":
                shares = conv_share(step, model, args)
                print(json.dumps({"conv_share_of_train_step": shares}), flush=True)
    direct = direct_rows(args) if "direct" in cases else []
    versus = ort_rows(args) if "ort" in cases else []
    profiled = profile(args) if "profile" in cases else None
    meta = {**describe(), "threads": args.threads, "repeats": args.repeats,
            "seconds": args.seconds, "smoke": args.smoke}
    if rows:
        print(f"\nWinograd / im2col, same process, interleaved ({args.repeats} pairs, "
              f"{args.threads} threads, {meta['cpu_model']}; max 1-min load "
              f"{max([r['max_load'] for r in rows] or [0]):.2f}):")
        print(f"{'case':8} {'mode':6} {'batch':>5} {'im2col/s':>10} {'winograd/s':>11} "
              f"{'ratio':>6}  range")
    for r in rows:
        print(f"{r['case']:8} {r['mode']:6} {r['batch']:5d} {r['im2col']:10.0f} "
              f"{r['winograd']:11.0f} {r['ratio']:6.2f}  {r['ratio_range'][0]:.2f}–"
              f"{r['ratio_range'][1]:.2f}")
    if shares:
        print("share of the cnn training step in Conv layers: " + ", ".join(
            f"{k} {v:.0%}" for k, v in shares.items()))
    if direct:
        print(f"\nDirect convolution / direct-off, same process, interleaved (max 1-min "
              f"load {max(r['max_load'] for r in direct):.2f}):")
        print(f"{'case':8} {'mode':6} {'batch':>5} {'old/s':>10} {'new/s':>10} {'new':>13} "
              f"{'ratio':>6}  range")
        for r in direct:
            print(f"{r['case']:8} {r['mode']:6} {r['batch']:5d} {r['old']:10.0f} "
                  f"{r['new']:10.0f} {r['paths'][1]:>13} {r['ratio']:6.2f}  "
                  f"{r['ratio_range'][0]:.2f}–{r['ratio_range'][1]:.2f}")
    if versus:
        print(f"\nclassic CNN predict, ours / peer, same process, interleaved "
              f"({args.repeats} pairs, {args.threads} threads, {versus[0]['clock']}; max "
              f"1-min load {max(r['max_load'] for r in versus):.2f}):")
        for r in versus:
            print(f"ours {r['ours']:7.0f}/s  {r['peer']:24s} {r['peer_rate']:7.0f}/s  "
                  f"ratio {r['ratio']:.2f}  {r['ratio_range'][0]:.2f}–{r['ratio_range'][1]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows,
                                               "conv_share": shares, "profile": profiled,
                                               "direct": direct, "ort": versus}, indent=1))


if __name__ == "__main__":
    main()
