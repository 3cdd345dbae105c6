"""Issue 14's benchmark harness: trainer's engine beside PyTorch eager on the CPU.

    python benchmarks/run.py                          # all cases, 2 threads, 5 repeats
    python benchmarks/run.py --threads 1 --repeats 3 --seconds 2
    python benchmarks/run.py --cases cnn,tiny --json results.json
    python benchmarks/run.py --no-torch               # ours only (also without torch)
    python benchmarks/run.py --smoke --json out.json  # every case once, tiny: what the tests run

Cases (float32; loss categorical cross-entropy over a softmax — PyTorch: its
CrossEntropyLoss on logits, as a PyTorch user writes it; optimizers with Keras's
defaults on both sides):

    case        model                                           optimizer          batches
    cnn         the classic Keras CIFAR CNN (configs/cifar_cnn  RMSprop lr 1e-3    train 128,
                .yaml: 4 convs, 2 max-pools, dropout, Dense      rho .9, eps 1e-7  infer 1024
                512, softmax), 32×32×3 inputs
    mlp         784-512-512-10 relu, Dropout 0.2 after each     Adam lr 1e-3       train 128,
                hidden layer                                     eps 1e-7          infer 1024
    tiny        20-64-10 relu/softmax (framework overhead)      SGD lr 0.01        train 32
    lstm        LSTM 128 inputs → 256 units (sigmoid gates,     Adam lr 1e-3       train 64
                the last output) → Dense 10 softmax; 100 steps   eps 1e-7
    gemm        only the MLP's three matrix products (1024x784 @ 784x512 @ 512x512 @      infer 1024
                512x10, float32), no bias, activation or softmax: NumPy through the
                engine's thread split, and torch.mm. A reference row, no target: the
                floor under "mlp infer", which is nothing else (1.37 GFLOP a batch)
    quickstart  `python -m trainer fit configs/quickstart.yaml` from launch to its first
                training step (target < 2 s), with a warm Numba cache
    mpi         data-parallel training over MPI (issue 27): the cnn and mlp train   train 128
                steps with 2 ranks × 1 thread (mpiexec -n 2, each rank half of
                the global batch, one fused allreduce of the gradients a step)
                against 1 process × 2 threads and 1 × 1; samples/s of the global
                batch, seconds in the allreduce per step, bytes it moves per step;
                2x1-f32: the same with the float32 buffer (fit.allreduce_dtype)
                (needs mpi4py and mpiexec: pip install 'trainer[mpi]')
    resnet50    Keras's ResNet50 at 224×224 (`application: ResNet50`, random      infer 32,
                weights) beside the same network by hand in PyTorch,            finetune 16
                channels_last: inference (1000 classes); one fine-tuning step
                of a new head (GAP, Dense 10) on the frozen base
                ("finetune-frozen") and on the unfrozen one ("finetune"), Adam
                lr 1e-3 (benchmarks/resnet50_models.py). No target: the ratios
                are for the issue. --smoke runs it at 32×32

Ours is built from a config dict by trainer.build.builder and driven by
``model.train_on_batch([x], [y])`` / ``model.predict_on_batch([x])``; PyTorch is the same
network as an ``nn.Module`` (NCHW images, integer labels), trained with
zero_grad/forward/loss/backward/step, and run for inference in ``eval()`` mode under
``torch.inference_mode()`` with a softmax on the logits (ours returns probabilities).

Methodology:

- Every measurement is a fresh subprocess (this script with a hidden ``--child``
  flag): one (case, mode, framework, repeat) each. So peak RSS is that process's own
  ``ru_maxrss`` and nothing is shared between frameworks (no BLAS pool, no allocator).
- Threads: the parent sets OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS and
  NUMBA_NUM_THREADS to ``--threads`` in the child's environment (so before NumPy,
  Numba or torch load); torch children also call ``torch.set_num_threads``.
- Interleaving: for each case and mode, repeat r runs ours then PyTorch's, the next
  repeat PyTorch's then ours (alternating), so a load that drifts on a shared machine
  hits both alike. The table shows medians over repeats; ratio = median(ours) /
  median(PyTorch's), "met?" compares it with the target; "pairs min-max" is the range
  of the ratios of each interleaved pair (repeat k of each): the machine's noise.
- In a child: the first step (timed from the parent's ``time.time()`` just before it
  launched the child: interpreter start, imports, building the model, making the data
  and the first step, including Numba compilation or cache loading — the "first step
  s" column; for inference rows the first predict), then ``--warmup`` more steps,
  then one timed window of ``--seconds`` seconds (or ``--steps`` steps): samples/s =
  samples in the window / its wall time. The data is one random batch made once.
- PyTorch's layout (issue 28): the cnn child times NCHW and channels_last, each in
  its own window after its own warm-up, and its counted window runs in the faster one
  (both rates are in the JSON's ``layouts`` and printed under the table).
- Load: a pair (ours and the peers, one repeat) measured while the 1-minute load
  average minus our own child's threads exceeds ``--load-limit`` (0.5) is measured
  again, up to ``--load-retries`` (2) times; one still loaded is kept and the table's
  title says UNDER LOAD — with other work on the cores PyTorch's OpenMP threads
  collapse and the ratio flatters us. The line above the table names the CPU, its
  SIMD flags and NumPy's BLAS with the kernel it runs (benchmarks/hostinfo.py).
- Steadiness: on a VM the load average can stay near 0 while another guest on the same
  physical cores (an SMT sibling, the host's clocks) moves the speed of every process
  ~2× within seconds (seen on a 2-vCPU AMD EPYC, steal time ~0: one framework's own
  repeats of one case 822-1625 samples/s). A case where one framework's repeats spread
  more than ``--spread-limit`` (max/min of its repeats, default 1.25) is UNSTEADY: the
  table's title says so, the spreads are printed under it, and its ratios are the
  machine's noise as much as the engines'.
- quickstart: one untimed launch first (warms the Numba cache), then ``--repeats``
  launches of the real CLI (``--set fit.epochs=1``, ``-q``, a temporary run folder) with
  a callback (benchmarks/first_step_hook.py) that stamps the end of the first training
  batch and stops training. Peak RSS of that process from ``os.wait4``.

PyTorch is optional (``pip install torch==2.13.0``, the CPU build); without it only ours
is measured. ONNX Runtime is the second inference peer (the ``infer`` rows: our model
exported by trainer's own ONNX exporter, run with ``--threads`` intra-op threads;
``pip install onnx onnxruntime``; ``--no-onnx`` leaves it out): its own table under the
main one, ratio = ours / ONNX Runtime. Timings on a shared machine are noisy, so the
tests run only ``--smoke``:
every selected case once (one repeat, batch 2, no warm-up, a 0.05 s window, no
quickstart warming launch; PyTorch too when installed), for the exit status and the
fields of ``--json``, never for speed. ``--json`` records the machine beside the
numbers (CPU model, SIMD flags: benchmarks/hostinfo.py).
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hostinfo import describe, summary_line  # this folder is sys.path[0]
from hostinfo import loadavg as _loadavg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CNN_CONFIG = ROOT / "configs" / "cifar_cnn.yaml"
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
MARK = "BENCH_RESULT "
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")

#: ``--isa``: "native" leaves every library to pick its own kernels; "avx2" caps ours
#: (Numba's target and OpenBLAS's kernel) and PyTorch's (ATen and oneDNN) at AVX2 on an
#: AVX-512 machine, for issue 28's "on AVX2 machines too" without a second machine.
#: ONNX Runtime has no such switch (MLAS picks its kernels by cpuid): it sits out.
ISA = "native"


def _avx2_features():
    """This CPU's LLVM feature string with every AVX-512 (and AMX) feature turned off:
    what Numba compiles for under NUMBA_CPU_FEATURES (its NUMBA_CPU_NAME alone keeps the
    host's features)."""
    from llvmlite import binding

    feats = binding.get_host_cpu_features().flatten().split(",")
    return ",".join("-" + f[1:] if f[1:].startswith(("avx512", "amx", "evex512")) else f
                    for f in feats if f)


def isa_env():
    """The environment variables ``--isa`` adds to every child's."""
    if ISA == "native":
        return {}
    return {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": _avx2_features(),
            "OPENBLAS_CORETYPE": "Haswell", "ATEN_CPU_CAPABILITY": "avx2",
            "ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2"}

# (case, mode, batch, target): target is a minimum ratio ours / PyTorch's
JOBS = [
    ("cnn", "train", 128, 1.0),
    ("cnn", "infer", 1024, 1.0),
    ("mlp", "train", 128, 1.0),
    ("mlp", "infer", 1024, 1.0),
    ("tiny", "train", 32, 2.0),
    ("lstm", "train", 64, 0.8),
    ("gemm", "infer", 1024, None),  # reference: the matrix products under mlp infer
    ("resnet50", "infer", 32, None),
    ("resnet50", "finetune-frozen", 16, None),
    ("resnet50", "finetune", 16, None),
]
QUICKSTART_TARGET_S = 2.0
CASES = ("cnn", "mlp", "tiny", "lstm", "gemm", "quickstart", "resnet50", "mpi", "predict")
MPI_MODELS, MPI_BATCH = ("cnn", "mlp"), 128
# name, ranks × threads, the allreduce buffer's dtype (fit.allreduce_dtype)
MPI_LAYOUTS = (("2x1", 2, 1, "float64"), ("2x1-f32", 2, 1, "float32"), ("1x2", 1, 2, None),
               ("1x1", 1, 1, None))
RESNET_SIZE, RESNET_SMOKE_SIZE = 224, 32

LSTM_TIME, LSTM_INPUTS, LSTM_UNITS = 100, 128, 256

# --smoke: checks that every case runs and reports, in seconds; measures nothing
SMOKE = {"repeats": 1, "warmup": 0, "seconds": 0.05, "steps": 0, "batch": 2}


# ---------------------------------------------------------------- the models: ours

def _our_model(input_shape, layers, optimizer):
    from trainer.build.builder import build_model
    from trainer.config.loader import from_dict

    cfg = from_dict({"data": {"train": {"dataset": "iris"}},  # unused: only the model
                     "model": {"input_shape": list(input_shape), "layers": layers},
                     "compile": {"loss": "categorical_crossentropy", "optimizer": optimizer}},
                    ROOT / "benchmarks" / "bench.yaml")
    return build_model(cfg)


def _cnn_layers():
    """The layers of configs/cifar_cnn.yaml, as written there."""
    import yaml

    return yaml.safe_load(CNN_CONFIG.read_text())["model"]["layers"]


def ours(case):
    """(model, input shape without batch)"""
    layers, shape, optimizer = our_layers(case)
    return _our_model(shape, layers, optimizer), shape


def our_layers(case):
    """(the model's layers as a config writes them, input shape, optimizer)"""
    rmsprop = {"RMSprop": {"learning_rate": 0.001, "rho": 0.9, "epsilon": 1e-7}}
    adam = {"Adam": {"learning_rate": 0.001, "epsilon": 1e-7}}
    sgd = {"SGD": {"learning_rate": 0.01}}
    relu = lambda n: {"Dense": {"units": n, "activation": "relu"}}  # noqa: E731
    softmax = {"Dense": {"units": 10, "activation": "softmax"}}
    if case == "cnn":
        return _cnn_layers(), (32, 32, 3), rmsprop
    if case == "mlp":
        drop = {"Dropout": {"rate": 0.2}}
        return [relu(512), drop, relu(512), drop, softmax], (784,), adam
    if case == "tiny":
        return [relu(64), softmax], (20,), sgd
    if case == "lstm":
        lstm = {"LSTM": {"units": LSTM_UNITS, "recurrent_activation": "sigmoid"}}
        return [lstm, softmax], (LSTM_TIME, LSTM_INPUTS), adam
    raise ValueError(case)


MLP_SIZES = (784, 512, 512, 10)


def our_step(case, mode, batch, image_size=RESNET_SIZE):
    import numpy as np

    rng = np.random.default_rng(0)
    if case == "gemm":
        from trainer.engine.kernels import parallel
        from trainer.build.model import Model

        x = rng.random((batch, MLP_SIZES[0]), dtype=np.float32)
        ws = [rng.random(shape, dtype=np.float32) - 0.5
              for shape in zip(MLP_SIZES[:-1], MLP_SIZES[1:])]
        # predict_on_batch's split, with its own constant (a copy here would drift)
        return lambda: parallel.run(lambda a, b: x[a:b] @ ws[0] @ ws[1] @ ws[2], batch,
                                    min_items=Model.PREDICT_MIN_ROWS)
    if case == "resnet50":
        import resnet50_models
        return resnet50_models.our_step(mode, batch, image_size)
    model, shape = ours(case)
    x = rng.random((batch, *shape), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]
    if mode == "train":
        return lambda: model.train_on_batch([x], [y])
    return lambda: model.predict_on_batch([x])


# ------------------------------------------------------------- the models: PyTorch

def torch_net(case):
    """(nn.Module giving logits, optimizer factory, input shape without batch)"""
    import torch
    from torch import nn

    rmsprop = lambda p: torch.optim.RMSprop(p, lr=1e-3, alpha=0.9, eps=1e-7)  # noqa: E731
    adam = lambda p: torch.optim.Adam(p, lr=1e-3, eps=1e-7)  # noqa: E731
    sgd = lambda p: torch.optim.SGD(p, lr=0.01)  # noqa: E731
    if case == "cnn":
        net = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(0.25),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
            nn.Linear(64 * 6 * 6, 512), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, 10))
        return net, rmsprop, (3, 32, 32)
    if case == "mlp":
        net = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2),
                            nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.2),
                            nn.Linear(512, 10))
        return net, adam, (784,)
    if case == "tiny":
        return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 10)), sgd, (20,)
    if case == "lstm":
        class LSTMHead(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = nn.LSTM(LSTM_INPUTS, LSTM_UNITS, batch_first=True)
                self.head = nn.Linear(LSTM_UNITS, 10)

            def forward(self, x):
                out, _ = self.lstm(x)
                return self.head(out[:, -1])

        return LSTMHead(), adam, (LSTM_TIME, LSTM_INPUTS)
    raise ValueError(case)


#: PyTorch memory layouts timed for the image case; the faster one counts (issue 28)
TORCH_LAYOUTS = ("nchw", "channels_last")


def torch_step(case, mode, batch, threads, image_size=RESNET_SIZE, layout="nchw"):
    """One PyTorch step; ``layout`` channels_last puts the CNN's weights and input in
    torch.channels_last (NHWC in memory), PyTorch's faster layout on some CPUs."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if case == "resnet50":
        import resnet50_models
        return resnet50_models.torch_step(mode, batch, image_size)
    if case == "gemm":
        x = torch.rand(batch, MLP_SIZES[0])
        ws = [torch.rand(*shape) - 0.5 for shape in zip(MLP_SIZES[:-1], MLP_SIZES[1:])]

        def products():
            with torch.inference_mode():
                return torch.mm(torch.mm(torch.mm(x, ws[0]), ws[1]), ws[2])
        return products
    net, make_opt, shape = torch_net(case)
    x = torch.rand(batch, *shape)
    y = torch.randint(0, 10, (batch,))
    if layout == "channels_last":
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if mode == "train":
        net.train()
        opt = make_opt(net.parameters())
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
            return loss.item()
        return step
    net.eval()

    def infer():
        with torch.inference_mode():
            return torch.softmax(net(x), dim=1)
    return infer


# ------------------------------------------------------- the peer: ONNX Runtime

ONNX_FRAMEWORK = "onnxruntime"


def have_onnxruntime():
    import importlib.util
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def onnx_measures(case, mode):
    """ONNX Runtime runs the inference rows of the models (not training, not gemm)."""
    return mode == "infer" and case in ("cnn", "mlp", "tiny", "lstm")


def onnx_step(case, mode, batch, threads):
    """Our model (same weights as ours would start with), exported by trainer's ONNX
    exporter, in an ONNX Runtime session on the CPU with ``threads`` intra-op threads."""
    import numpy as np
    import onnxruntime as ort

    sys.path.insert(0, str(ROOT))
    from trainer.onnx_io.graph import build_proto

    model, shape = ours(case)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(build_proto(model).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((batch, *shape), dtype=np.float32)
    feeds = {model.input_names[0]: x}
    return lambda: session.run(None, feeds)


def onnx_summary(row, results):
    """Add ONNX Runtime's medians and ours / ONNX Runtime to a summarized row."""
    rs = results.get(ONNX_FRAMEWORK, [])
    rate = median([r for x in rs for r in x["rates"]])
    row[ONNX_FRAMEWORK] = {"samples_per_s": rate, "repeats": rs,
                           "peak_rss_mb": median([x["peak_rss_mb"] for x in rs])}
    ours_rate, torch_rate = row["ours"]["samples_per_s"], row["torch"]["samples_per_s"]
    row["ratio_onnxruntime"] = ours_rate / rate if ours_rate and rate else None
    row["onnxruntime_vs_torch"] = rate / torch_rate if rate and torch_rate else None
    return row


def onnx_table(rows):
    lines = ["case  mode  batch | ours samples/s | onnxruntime samples/s | ours/ort | "
             "ort/torch | ort peak RSS MB"]
    for r in rows:
        o = r.get(ONNX_FRAMEWORK)
        if not o or not o["repeats"]:
            continue
        lines.append(f"{r['case']:5} {r['mode']:5} {r['batch']:5} | "
                     f"{_fmt(r['ours']['samples_per_s'], '.0f'):>14} | "
                     f"{_fmt(o['samples_per_s'], '.0f'):>21} | "
                     f"{_fmt(r['ratio_onnxruntime'], '.2f'):>8} | "
                     f"{_fmt(r['onnxruntime_vs_torch'], '.2f'):>9} | "
                     f"{_fmt(o['peak_rss_mb'], '.0f'):>15}")
    return "\n".join(lines) if len(lines) > 1 else ""


# ------------------------------------------------------------------- the child

def child(args):
    """One measurement; prints MARK + one JSON line."""
    if args.child == "ours":
        sys.path.insert(0, str(ROOT))
        step = our_step(args.case, args.mode, args.batch, args.image_size)
    elif args.child == ONNX_FRAMEWORK:
        step = onnx_step(args.case, args.mode, args.batch, args.threads)
    else:
        step = torch_step(args.case, args.mode, args.batch, args.threads, args.image_size)
    load = [_loadavg()]
    step()
    first = time.time() - args.t0
    for _ in range(args.warmup):
        step()
    layouts = {}
    if args.child == "torch" and args.case == "cnn":
        # both memory layouts, each its own window in this process; the faster counts
        steps = {lay: torch_step(args.case, args.mode, args.batch, args.threads,
                                layout=lay)
                 for lay in TORCH_LAYOUTS[1:]}
        steps[TORCH_LAYOUTS[0]] = step
        for lay in TORCH_LAYOUTS:
            for _ in range(1 + args.warmup if lay != TORCH_LAYOUTS[0] else 0):
                steps[lay]()
            layouts[lay] = _window(steps[lay], args)[2]
        step = steps[max(layouts, key=layouts.get)]
    if args.profile:
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    n, start = 0, time.perf_counter()
    while True:
        step()
        n += 1
        elapsed = time.perf_counter() - start
        if (args.steps and n >= args.steps) or (not args.steps and elapsed >= args.seconds):
            break
    if args.profile:
        import pstats
        profiler.disable()
        print(f"--- cProfile of {n} {args.child} {args.case} {args.mode} steps, batch "
              f"{args.batch} (by own time) ---")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(20)
    result = {"framework": args.child, "case": args.case, "mode": args.mode,
              "batch": args.batch, "rates": [n * args.batch / elapsed], "steps": [n],
              "layouts": layouts,
              "first_step_s": first,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "loadavg": load + [_loadavg()], "versions": _versions(args.child)}
    print(MARK + json.dumps(result), flush=True)


def _window(step, args):
    """(steps, seconds, samples/s) of one timed window."""
    n, start = 0, time.perf_counter()
    while True:
        step()
        n += 1
        elapsed = time.perf_counter() - start
        if (args.steps and n >= args.steps) or (not args.steps and elapsed >= args.seconds):
            return n, elapsed, n * args.batch / elapsed


def mpi_child(args):
    """One data-parallel measurement under mpiexec: every rank steps on its rows of one
    global batch; rank 0 decides when the window ends (a broadcast a step, so all ranks
    run the same steps) and prints the result."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from trainer.distributed.world import current
    from trainer.training import data_parallel

    world = current()
    model, shape = ours(args.case)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, *shape), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, args.batch)]
    dtype = np.dtype(args.allreduce_dtype)

    def take(rows):
        return [x[rows]], [y[rows]], None

    def step():
        data_parallel.optimizer_step(model, world, np.arange(args.batch), take, dtype=dtype)

    step()
    first = time.time() - args.t0
    for _ in range(args.warmup):
        step()
    world.allreduce_seconds, world.allreduce_bytes, world.allreduce_calls = 0.0, 0, 0
    n, start = 0, time.perf_counter()
    while True:
        step()
        n += 1
        elapsed = time.perf_counter() - start
        done = (args.steps and n >= args.steps) or (not args.steps and elapsed >= args.seconds)
        if world.broadcast(bool(done)):
            break
    if world.is_root:
        result = {"framework": "ours", "case": args.case, "mode": "train", "batch": args.batch,
                  "ranks": world.size, "rates": [n * args.batch / elapsed], "steps": [n],
                  "first_step_s": first, "allreduce_s_per_step": world.allreduce_seconds / n,
                  "bytes_per_step": world.allreduce_bytes / n,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "loadavg": [_loadavg()], "versions": _versions("ours")}
        print(MARK + json.dumps(result), flush=True)


def _versions(framework):
    import numpy

    out = {"numpy": numpy.__version__}
    if framework == ONNX_FRAMEWORK:
        import onnxruntime
        out["onnxruntime"] = onnxruntime.__version__
    elif framework == "torch":
        import torch
        out["torch"] = torch.__version__
        out["torch_threads"] = torch.get_num_threads()
        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    else:
        import numba
        from numba.core import config

        from hostinfo import blas
        out["numba"] = numba.__version__
        from trainer.engine.kernels import direct_conv

        out["numba_cpu"] = config.CPU_NAME or "host"
        # Numba's target: NUMBA_CPU_NAME/FEATURES when set, else this CPU's own features
        # (the host target claimed AVX-512 on an AVX2-only machine before)
        out["numba_avx512"] = direct_conv.wide_vectors()
        out["blas_kernel"] = blas().get("kernel")
    return out


# ------------------------------------------------------------------- the parent

def child_env(threads):
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    env.update(isa_env())
    # this checkout's trainer, not another installed one
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def child_command(framework, case, mode, batch, args):
    return [sys.executable, str(Path(__file__).resolve()), "--child", framework,
            "--case", case, "--mode", mode, "--batch", str(batch),
            "--threads", str(args.threads), "--seconds", str(args.seconds),
            "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--image-size", str(args.image_size)]


def run_child(framework, case, mode, batch, args):
    cmd = child_command(framework, case, mode, batch, args)
    t0 = time.time()
    proc = subprocess.run(cmd + ["--t0", repr(t0)], env=child_env(args.threads), cwd=ROOT,
                          capture_output=True, text=True, timeout=args.timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
    raise RuntimeError(f"{framework} {case} {mode} failed (exit {proc.returncode}):\n{tail}")


def run_quickstart(tmp, args, index):
    """Seconds from launching `trainer fit configs/quickstart.yaml` to the end of its
    first training batch, and the peak RSS of that process (MB)."""
    stamp = Path(tmp) / f"first_step_{index}.json"
    stamp.unlink(missing_ok=True)
    env = child_env(args.threads)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env["PYTHONPATH"]])
    env["TRAINER_BENCH_FIRST_STEP"] = str(stamp)
    cmd = [sys.executable, "-m", "trainer", "fit", str(QUICKSTART.relative_to(ROOT)),
           "--set", "fit.epochs=1", "--set", "expect={}",  # one step is not a trained model
           "--set", 'callbacks=[{callback: "first_step_hook:FirstStep"}]',
           "--run-dir", str(Path(tmp) / f"run_{index}"), "-q"]
    load = [_loadavg()]
    with open(Path(tmp) / f"stderr_{index}.txt", "w+") as err:
        t0 = time.time()
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read()
    if proc.returncode != 0 or not stamp.exists():
        tail = "\n".join(text.strip().splitlines()[-8:])
        raise RuntimeError(f"quickstart failed (exit {proc.returncode}):\n{tail}")
    first = json.loads(stamp.read_text())["time"] - t0
    return {"framework": "ours", "case": "quickstart", "mode": "fit", "batch": 32,
            "rates": [], "first_step_s": first, "peak_rss_mb": usage.ru_maxrss / 1024,
            "loadavg": load + [_loadavg()]}


def have_mpi():
    import importlib.util

    return shutil.which("mpiexec") is not None and importlib.util.find_spec("mpi4py") is not None


def run_mpi_layout(case, batch, ranks, threads, args, dtype=None):
    """One measurement of ``case``'s train step with ``ranks`` processes of ``threads``
    threads each: under mpiexec (ranks > 1, the allreduce buffer of ``dtype``) or as
    the plain child."""
    layout = argparse.Namespace(**{**vars(args), "threads": threads})
    if ranks == 1:
        res = run_child("ours", case, "train", batch, layout)
        return {**res, "ranks": 1, "allreduce_s_per_step": 0.0, "bytes_per_step": 0.0}
    cmd = [shutil.which("mpiexec"), "-n", str(ranks),
           *child_command("mpi", case, "train", batch, layout), "--t0", repr(time.time()),
           "--allreduce-dtype", dtype or "float64"]
    env = child_env(threads)
    for name in ("PMI_SIZE", "PMI_RANK"):
        env.pop(name, None)
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=args.timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
    raise RuntimeError(f"mpi {case} {ranks}x{threads} failed (exit {proc.returncode}):\n{tail}")


def run_mpi(args, errors):
    """The mpi rows: per model, each layout's medians; the row's ``ours`` is 2 × 1's."""
    rows = []
    if not have_mpi():
        log("mpi: mpiexec or mpi4py missing (pip install 'trainer[mpi]'): not measured")
        return rows
    batch = SMOKE["batch"] if args.smoke else MPI_BATCH
    for case in MPI_MODELS:
        layouts = {}
        for name, ranks, threads, dtype in MPI_LAYOUTS:
            reps = []
            for r in range(args.repeats):
                try:
                    res = run_mpi_layout(case, batch, ranks, threads, args, dtype)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    errors.append(str(exc))
                    log(f"  mpi {case} {name}: {exc}")
                    continue
                reps.append(res)
                log(f"  mpi {case:4s} {name} repeat {r + 1}: {res['rates'][0]:9.1f} samples/s  "
                    f"allreduce {res['allreduce_s_per_step'] * 1e3:.2f} ms/step  "
                    f"{res['bytes_per_step'] / 1e6:.2f} MB/step")
            layouts[name] = {
                "ranks": ranks, "threads": threads,
                "samples_per_s": median([x["rates"][0] for x in reps]),
                "allreduce_s_per_step": median([x["allreduce_s_per_step"] for x in reps]),
                "bytes_per_step": median([x["bytes_per_step"] for x in reps]),
                "repeats": reps}
        row = summarize("mpi", case, batch, None, {"ours": layouts["2x1"]["repeats"]})
        row["layouts"] = layouts
        rows.append(row)
    return rows


def run_predict(args, errors):
    """The predict rows (benchmarks/predict_cli.py): per model, ``trainer predict`` end
    to end, the engine in-process and ONNX Runtime end to end, interleaved."""
    import predict_cli

    rows = []
    batch = SMOKE["batch"] if args.smoke else predict_cli.BATCH
    env = child_env(args.threads)

    def run_env(command):
        return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=args.timeout)

    with_ort = ISA == "native" and not args.no_onnx and have_onnxruntime()
    with tempfile.TemporaryDirectory(prefix="trainer_predict_") as tmp:
        for case in predict_cli.MODELS:
            layers, shape, _ = our_layers(case)
            try:
                folder = predict_cli.setup(tmp, case, layers, shape, batch, run_env)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                errors.append(str(exc))
                log(f"  predict {case}: {exc}")
                continue
            peers = {"cli": lambda size: predict_cli.ours_command(folder, size, batch)}
            if with_ort:
                peers["onnxruntime_cli"] = lambda size: predict_cli.ort_command(
                    folder, size, batch, args.threads)
            reps = []
            for r in range(args.repeats):
                for attempt in range(args.load_retries + 1):
                    rep, load = {}, [_loadavg()]
                    try:
                        order = list(peers) if r % 2 == 0 else list(peers)[::-1]
                        for name in order:
                            small = predict_cli.timed(peers[name]("small"), run_env)
                            big = predict_cli.timed(peers[name]("big"), run_env)
                            rep[name] = predict_cli.rate(case, small, big, batch)
                        inproc = run_child("ours", case, "infer", batch, args)
                        rep["in_process"] = inproc["rates"][0]
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        errors.append(str(exc))
                        log(f"  predict {case}: {exc}")
                        break
                    load += inproc.get("loadavg", []) + [_loadavg()]
                    rep["loadavg"] = load
                    excess = excess_load([rep], args.threads)
                    rep["loaded"] = excess is not None and excess > args.load_limit
                    if not rep["loaded"] or attempt == args.load_retries:
                        break
                    log(f"  1-minute load {excess:.2f} above our own child's: repeating")
                if "in_process" not in rep:
                    continue
                reps.append(rep)
                log(f"  predict {case} repeat {r + 1}: " + "  ".join(
                    f"{k} {rep[k]:.0f}" for k in ("cli", "in_process", "onnxruntime_cli")
                    if rep.get(k) is not None) + " samples/s")
            row = {"case": "predict", "mode": case, "batch": batch, "target": None,
                   "met": None, "repeats": reps, **predict_cli.outputs(folder),
                   "loaded_pairs": sum(1 for rep in reps if rep["loaded"])}
            for key in ("cli", "in_process", "onnxruntime_cli"):
                row[key] = median([rep.get(key) for rep in reps])
            cli, inproc, ort = row["cli"], row["in_process"], row["onnxruntime_cli"]
            row["cli_vs_in_process"] = cli / inproc if cli and inproc else None
            row["cli_vs_onnxruntime_cli"] = cli / ort if cli and ort else None
            rows.append(row)
    return rows


def predict_table(rows):
    lines = ["model | trainer predict samples/s | in-process samples/s | predict / "
             "in-process | ONNX Runtime script samples/s | predict / ORT"]
    for r in rows:
        lines.append(f"{r['mode']:<5} | {_fmt(r['cli'], '.0f'):>25} | "
                     f"{_fmt(r['in_process'], '.0f'):>20} | "
                     f"{_fmt(r['cli_vs_in_process'], '.2f'):>22} | "
                     f"{_fmt(r['onnxruntime_cli'], '.0f'):>28} | "
                     f"{_fmt(r['cli_vs_onnxruntime_cli'], '.2f'):>13}")
    return "\n".join(lines)


def mpi_table(rows):
    lines = [f"{'model':<5} | {'layout':<7} | {'samples/s':>9} | {'allreduce ms/step':>17} | "
             f"{'MB/step':>7}"]
    for row in rows:
        for name, lay in row["layouts"].items():
            ms = lay["allreduce_s_per_step"]
            mb = lay["bytes_per_step"]
            lines.append(f"{row['mode']:<5} | {name:<7} | {_fmt(lay['samples_per_s'], '.0f'):>9} | "
                         f"{_fmt(None if ms is None else ms * 1e3, '.2f'):>17} | "
                         f"{_fmt(None if mb is None else mb / 1e6, '.2f'):>7}")
    return "\n".join(lines)


def have_torch():
    try:
        import importlib.util
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def excess_load(measurements, threads):
    """The 1-minute load average around a pair of measurements minus our own child's
    threads (its max over the pair), or None when not known."""
    loads = [v for m in measurements for v in m.get("loadavg", []) if v is not None]
    return max(loads) - threads if loads else None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(case, mode, batch, target, results):
    row = {"case": case, "mode": mode, "batch": batch, "target": target}
    for fw in ("ours", "torch"):
        rs = results.get(fw, [])
        row[fw] = {
            "samples_per_s": median([r for x in rs for r in x["rates"]]),
            "peak_rss_mb": median([x["peak_rss_mb"] for x in rs]),
            "first_step_s": median([x["first_step_s"] for x in rs]),
            "repeats": rs,
        }
    a, b = row["ours"]["samples_per_s"], row["torch"]["samples_per_s"]
    if target is None:  # a reference row
        row["ratio"] = a / b if a and b else None
        row["met"] = None
    elif case == "quickstart":
        row["ratio"] = None
        first = row["ours"]["first_step_s"]
        row["met"] = None if first is None else first < target
    else:
        row["ratio"] = a / b if a and b else None
        row["met"] = None if row["ratio"] is None else row["ratio"] >= target
    # the ratio of each interleaved pair of processes (repeat k of ours against repeat k
    # of torch): how far the shared machine moves the answer between runs
    pairs = [median(x["rates"]) / median(y["rates"])
             for x, y in zip(results.get("ours", []), results.get("torch", []))
             if median(x["rates"]) and median(y["rates"])]
    row["pair_ratios"] = pairs
    row["loaded_pairs"] = sum(1 for fw in results for x in results[fw] if x.get("loaded"))
    row["repeat_spread"] = repeat_spread(results)
    return row


def repeat_spread(results):
    """Per framework with two repeats or more: the largest of its repeats' rates over
    the smallest (module doc: steadiness)."""
    out = {}
    for fw, reps in results.items():
        rates = [median(x.get("rates") or []) for x in reps]
        rates = [r for r in rates if r]
        if len(rates) >= 2:
            out[fw] = max(rates) / min(rates)
    return out


def unsteady(rows, limit):
    """(case, mode, framework, spread) of every framework whose repeats spread more
    than ``limit``."""
    return [(r["case"], r["mode"], fw, v) for r in rows
            for fw, v in sorted((r.get("repeat_spread") or {}).items()) if v > limit]


COLUMNS = [("case", 10), ("mode", 5), ("batch", 5), ("ours samples/s", 14),
           ("torch samples/s", 15), ("ratio", 5), ("pairs min-max", 13), ("target", 6),
           ("met?", 4),
           ("ours peak RSS MB", 16), ("torch peak RSS MB", 17), ("ours first step s", 17),
           ("torch first step s", 18)]


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def table(rows):
    lines = [" | ".join(f"{name:>{w}}" if i > 2 else f"{name:<{w}}"
                        for i, (name, w) in enumerate(COLUMNS))]
    lines.append("-+-".join("-" * w for _, w in COLUMNS))
    for r in rows:
        o, t = r["ours"], r["torch"]
        target = ("-" if r["target"] is None else f"<{r['target']:g} s"
                  if r["case"] == "quickstart" else f">={r['target']:g}")
        met = {None: "-", True: "yes", False: "no"}[r["met"]]
        pairs = r.get("pair_ratios") or []
        spread = f"{min(pairs):.2f}-{max(pairs):.2f}" if pairs else "-"
        cells = [r["case"], r["mode"], str(r["batch"]), _fmt(o["samples_per_s"], ".0f"),
                 _fmt(t["samples_per_s"], ".0f"), _fmt(r["ratio"], ".2f"), spread, target,
                 met,
                 _fmt(o["peak_rss_mb"], ".0f"), _fmt(t["peak_rss_mb"], ".0f"),
                 _fmt(o["first_step_s"], ".2f"), _fmt(t["first_step_s"], ".2f")]
        lines.append(" | ".join(f"{c:>{w}}" if i > 2 else f"{c:<{w}}"
                                for i, (c, (_, w)) in enumerate(zip(cells, COLUMNS))))
    return "\n".join(lines)


def log(message):
    print(message, file=sys.stderr, flush=True)


def selected_jobs(args, cases):
    """The JOBS of the selected cases; under --smoke, each at the smoke batch."""
    return [(case, mode, SMOKE["batch"] if args.smoke else batch, target)
            for case, mode, batch, target in JOBS if case in cases]


def parent(args):
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        sys.exit(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    if args.profile:  # ours only, output passed through
        for case, mode, batch, _ in selected_jobs(args, cases):
            cmd = child_command(framework="ours", case=case, mode=mode, batch=batch, args=args)
            subprocess.run(cmd + ["--profile", "--t0", repr(time.time())],
                           env=child_env(args.threads), cwd=ROOT, check=False)
        return
    frameworks = ["ours"]
    if not args.no_torch:
        if have_torch():
            frameworks.append("torch")
        else:
            log("torch is not installed: measuring trainer only (pip install torch==2.13.0)")
    if ISA != "native":
        log(f"--isa {ISA}: ours and PyTorch capped at {ISA}; ONNX Runtime has no such "
            f"switch and sits out")
    elif not args.no_onnx and have_onnxruntime():
        frameworks.append(ONNX_FRAMEWORK)
    window = f"{args.steps} steps" if args.steps else f"{args.seconds:g} s"
    log(f"{args.threads} thread(s), {args.repeats} repeat(s), {args.warmup} warm-up "
        f"step(s) then a {window} window per process; frameworks: {', '.join(frameworks)}")
    rows, errors = [], []
    for case, mode, batch, target in selected_jobs(args, cases):
        results = {fw: [] for fw in frameworks}
        for r in range(args.repeats):
            order = frameworks if r % 2 == 0 else frameworks[::-1]
            order = [fw for fw in order if fw != ONNX_FRAMEWORK or onnx_measures(case, mode)]
            for attempt in range(args.load_retries + 1):
                pair = {}
                for fw in order:
                    try:
                        res = run_child(fw, case, mode, batch, args)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        errors.append(str(exc))
                        log(f"  {case} {mode} {fw}: {exc}")
                        continue
                    pair[fw] = res
                    log(f"  {case:5s} {mode:5s} b{batch:<5d} repeat {r + 1} {fw:5s} "
                        f"{res['rates'][0]:9.1f} samples/s  first step "
                        f"{res['first_step_s']:.2f} s  peak RSS {res['peak_rss_mb']:.0f} MB")
                excess = excess_load(pair.values(), args.threads)
                if excess is None or excess <= args.load_limit:
                    break
                if attempt < args.load_retries:
                    log(f"  1-minute load {excess:.2f} above our own child's: repeating the pair")
            for fw, res in pair.items():
                res["loaded"] = excess is not None and excess > args.load_limit
                results[fw].append(res)
        rows.append(onnx_summary(summarize(case, mode, batch, target, results), results))
    if "quickstart" in cases:
        results = {"ours": []}
        with tempfile.TemporaryDirectory(prefix="trainer_bench_") as tmp:
            try:
                if not args.smoke:
                    run_quickstart(tmp, args, "warm")  # fills the Numba cache; not counted
                for r in range(args.repeats):
                    res = run_quickstart(tmp, args, r)
                    results["ours"].append(res)
                    log(f"  quickstart repeat {r + 1}: first step {res['first_step_s']:.2f} s"
                        f"  peak RSS {res['peak_rss_mb']:.0f} MB")
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                errors.append(str(exc))
                log(f"  quickstart: {exc}")
        rows.append(summarize("quickstart", "fit", 32, QUICKSTART_TARGET_S, results))
    if "mpi" in cases:
        rows += run_mpi(args, errors)
    if "predict" in cases:
        rows += run_predict(args, errors)
    predict_rows = [r for r in rows if r["case"] == "predict"]
    rows = [r for r in rows if r["case"] != "predict"]
    print()
    if args.smoke:  # no verdict on a target from numbers that measure nothing
        for row in rows:
            row["met"] = None
        print("smoke mode: every case ran once at the smallest sizes; these numbers "
              "measure nothing")
    loaded = sum(row.get("loaded_pairs", 0) for row in rows + predict_rows)
    if loaded:
        print(f"UNDER LOAD — {loaded} measurement(s) ran while the 1-minute load average "
              f"minus our own child exceeded {args.load_limit:g} (after "
              f"{args.load_retries} retr{'y' if args.load_retries == 1 else 'ies'}): the "
              f"ratios below are not results")
    shaky = [] if args.smoke else unsteady(rows, args.spread_limit)
    if shaky:
        print(f"UNSTEADY — in {len({(c, m) for c, m, _, _ in shaky})} case(s) one "
              f"framework's own repeats spread more than {args.spread_limit:g}× (max/min) "
              f"with the load average low: the machine's speed moved under the "
              f"measurements (another guest on these cores?); those ratios are not results")
    print(f"trainer vs PyTorch eager, CPU, {args.threads} thread(s), medians of "
          f"{args.repeats} repeat(s), {window} per window; ratio = ours / torch "
          f"samples/s (PyTorch cnn: the faster of NCHW and channels_last); first step = "
          f"from process launch" + (" [UNDER LOAD]" if loaded else "")
          + (" [UNSTEADY]" if shaky else ""))
    print(summary_line(describe()) + (f"; capped at {ISA.upper()} (--isa {ISA}: "
                                      f"{' '.join(sorted(isa_env()))})" if ISA != "native" else ""))
    ran = _children_kernels(rows)
    if ran:
        print("the children ran: " + ran)
    if rows:
        print(table(rows))
    if shaky:
        print("repeats' spread (max/min samples/s of one framework's repeats) above "
              f"{args.spread_limit:g}: " + ", ".join(f"{c} {m} {fw} {v:.2f}"
                                                     for c, m, fw, v in shaky))
    for row in rows:
        lays = [rep.get("layouts") for rep in row["torch"]["repeats"] if rep.get("layouts")]
        if lays:
            print(f"PyTorch {row['case']} {row['mode']} by layout (median samples/s): " +
                  ", ".join(f"{lay} {median([x[lay] for x in lays]):.0f}"
                            for lay in TORCH_LAYOUTS))
    mpi_rows = [r for r in rows if r["case"] == "mpi"]
    if mpi_rows:
        print("\ndata-parallel over MPI: 2 ranks × 1 thread against 1 process × 2 threads "
              "and 1 × 1 (global batch; allreduce: the fused gradient sum a step)")
        print(mpi_table(mpi_rows))
    if predict_rows:
        import predict_cli

        big = ", ".join(f"{m} {n}" for m, n in predict_cli.BIG.items())
        print(f"\nbatch inference end to end (benchmarks/predict_cli.py): `trainer predict "
              f"CONFIG --input x.npy --output out.npy` and a script running the exported "
              f"model in ONNX Runtime, each a fresh process, samples/s = extra rows / extra "
              f"seconds of a big input ({big} batches) over a 1-batch one; "
              f"in-process: predict_on_batch at the same batch")
        print(predict_table(predict_rows))
    if onnx_table(rows):
        print(f"\nONNX Runtime (CPUExecutionProvider, {args.threads} intra-op thread(s)) on "
              f"the models trainer exports")
        print(onnx_table(rows))
    loads = [v for row in rows for fw in ("ours", "torch") for rep in row[fw]["repeats"]
             for v in rep.get("loadavg", []) if v is not None]
    if loads:
        print(f"1-minute load average around the measurements: {min(loads):.2f} to "
              f"{max(loads):.2f} on {os.cpu_count()} CPUs (our own child counts ~{args.threads})")
    if args.json:
        versions = {}
        for row in rows:
            for fw in ("ours", "torch"):
                for rep in row[fw]["repeats"]:
                    versions.update(rep.get("versions", {}))
        meta = {"threads": args.threads, "repeats": args.repeats, "seconds": args.seconds,
                "steps": args.steps, "warmup": args.warmup, "smoke": args.smoke,
                "load_limit": args.load_limit, "loaded_pairs": loaded, "isa": ISA,
                "spread_limit": args.spread_limit,
                "unsteady": [{"case": c, "mode": m, "framework": fw, "spread": v}
                             for c, m, fw, v in shaky],
                "frameworks": frameworks, **describe(), **versions}
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows + predict_rows,
                                               "errors": errors},
                                              indent=1))
        log(f"results written to {args.json}")
    if errors:
        log(f"{len(errors)} measurement(s) failed (see above)")
        sys.exit(1)


def _children_kernels(rows):
    """What the children report they ran on (their ``versions``): Numba's target, the
    BLAS kernel and PyTorch's CPU capability — the proof an ``--isa`` cap took."""
    seen = {}
    for row in rows:
        for fw in ("ours", "torch"):
            for rep in row.get(fw, {}).get("repeats", []):
                v = rep.get("versions", {})
                if "numba_cpu" in v:
                    seen["ours: Numba target"] = (f"{v['numba_cpu']}" + (
                        " with AVX-512" if v.get("numba_avx512") else " without AVX-512"))
                    seen["ours: BLAS kernel"] = str(v.get("blas_kernel"))
                if "torch_cpu_capability" in v:
                    seen["PyTorch: ATen capability"] = str(v["torch_cpu_capability"])
    return "; ".join(f"{k} {v}" for k, v in seen.items())


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="threads for both (default 2)")
    p.add_argument("--repeats", type=int, default=5, help="processes per framework and case")
    p.add_argument("--seconds", type=float, default=2.0, help="timed window (default 2 s)")
    p.add_argument("--steps", type=int, default=0, help="timed window of N steps instead")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after the first")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma list of {', '.join(CASES)}")
    p.add_argument("--no-torch", action="store_true", help="measure ours only")
    p.add_argument("--no-onnx", action="store_true", help="leave ONNX Runtime out")
    p.add_argument("--json", metavar="FILE", help="write all results here")
    p.add_argument("--isa", choices=["native", "avx2"], default="native",
                   help="avx2: cap ours (Numba, OpenBLAS) and PyTorch (ATen, oneDNN) at AVX2 "
                        "on an AVX-512 machine; ONNX Runtime sits out (default native)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per child process")
    p.add_argument("--load-limit", type=float, default=0.5,
                   help="repeat a pair measured while the 1-minute load minus our child "
                        "exceeds this (default 0.5)")
    p.add_argument("--spread-limit", type=float, default=1.25,
                   help="call a case UNSTEADY when one framework's repeats spread more "
                        "than this (max/min samples/s; default 1.25)")
    p.add_argument("--load-retries", type=int, default=2,
                   help="times a loaded pair is repeated before it is kept and the table "
                        "says so (default 2; 0 under --smoke)")
    p.add_argument("--profile", action="store_true",
                   help="instead: cProfile our steps in each selected case's timed window")
    p.add_argument("--smoke", action="store_true",
                   help=f"check every selected case runs, measuring nothing: sets "
                        f"{', '.join(f'{k} {v:g}' for k, v in SMOKE.items())}, no quickstart "
                        f"warming launch")
    # the child side (one measurement), used by the parent only
    p.add_argument("--child", choices=["ours", "torch", "onnxruntime", "mpi"],
                   help=argparse.SUPPRESS)
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=["train", "infer", "finetune-frozen", "finetune"],
                   help=argparse.SUPPRESS)
    p.add_argument("--image-size", type=int, default=RESNET_SIZE, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    p.add_argument("--allreduce-dtype", default="float64", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        for key in ("repeats", "warmup", "seconds", "steps"):
            setattr(args, key, SMOKE[key])
        args.image_size = RESNET_SMOKE_SIZE
        args.load_retries = 0
    return args


def main():
    global ISA
    args = parse()
    ISA = args.isa
    if args.child == "mpi":
        mpi_child(args)
    elif args.child:
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
