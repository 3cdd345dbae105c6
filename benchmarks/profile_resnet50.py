"""Where a ResNet50 step's time goes, per layer type, forward vs backward, in one
process: each layer's ``forward`` and the backward closure it returns are wrapped
with a wall-clock timer (fused chains' epilogues fall under "unattributed").

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/profile_resnet50.py \
        [--mode finetune|finetune-frozen|infer] [--batch 16] [--size 224] [--steps 3] \
        [--shapes] [--threads 2] [--json out.json] [--smoke]

``--smoke``: batch 2 at 32² for one step (tests/test_benchmarks_smoke.py).

What it showed for the full fine-tune step (batch 16, 224², 2 threads, 2026-12-03,
a test run of another engineer on one of the two cores, so absolute times inflate):
share of the step by layer type — Conv2D 1×1 stride 1 backward 21%, 3×3 (Winograd)
backward 21%, BatchNormalization backward 16%, 3×3 forward 8.5%, 1×1 forward 8.4%,
BatchNormalization forward 7.5%, 1×1 stride 2 backward 6.5% and forward 2.5%, the 7×7
stride-2 first convolution 2.5% (both ways), MaxPooling2D 0.4%, ZeroPadding2D 0.1%,
the rest (loss, Adam, the chains' relu/Add epilogues) 6%. Per shape (--shapes), the
one outlier: the 7×7×512 3×3 convolutions' backward, 11.5% of the step for 3 layers,
5.3× their forward (Winograd's weight gradient: per chunk group a (16, C, K) float32
partial, 16 MB at 512 channels, summed from a per-thread product buffer with K = 64
tiles per GEMM). A layer A/B at that shape (batch 16, fwd + bwd, 9 pairs): Winograd /
im2col 1.23 median (0.89–35); at 8×8 256→256 1.05; at 14×14 Winograd wins.
BatchNormalization (23% together) runs as ~8 single-threaded NumPy passes forward and
~13 backward. Padding + pooling is under 1% of a training step.

After BatchNormalization's compiled training passes (trainer/engine/kernels/
batchnorm.py; 2026-12-03, load 3.4-4.4, so absolute times inflate): two pairs of
runs, before/after — BatchNormalization 26%/25% of the step before (plus 6% of
unattributed chain epilogues), 15%/12% after (its chains' Add and relu now inside
it: unattributed 3%/2%); in one process, old and new BatchNormalization interleaved
over whole steps (bench_bn.py --step, 6 pairs), the step 1.33x faster (median;
1.17-1.69 at load 4.1-4.9; 1.22x, 0.97-1.85, in an earlier run).
A forward_chain (a fused chain's run) is timed as its layer's.

The convolutions' backward after the first profile (issue 28; old → new in one process,
interleaved, batch 16; the machine loaded, 1-min load 3.5-6, so per-layer ratios, not
times, are the result):
- Winograd's weight gradient now runs per block of chunks (the whole batch at 7×7 and
  14×14) as 16 GEMMs over all the block's tiles, the points split over the threads,
  and the kernel transforms are Numba passes (the einsums took ~5 ms each at 512²).
  Chunks with many tiles for their channels (56×56, 28×28) keep the per-chunk dW
  (``winograd.PARTIAL_SHARE``; whole step with blocks everywhere / with the rule,
  2 threads, 5 pairs: 1.04, 0.94–1.20).
  Layer backward old/new, 2 threads, 7 pairs: 7×7×512 2.56 (2.06–3.22), 14×14×256
  1.73 (1.55–4.77), 28×28×128 1.13, 56×56×64 1.07 (with blocks; they now keep the
  chunked dW); one thread (CPU time): 1.84, 1.35, 1.07, 1.04. The 7×7×512 forward got
  2.1× faster too (its kernel transform).
  Winograd / im2col, forward + backward, 2 threads: 14×14×256 0.63, 7×7×512 0.51 —
  Winograd now wins at every ResNet50 shape, so no im2col rule for small maps.
  Backward / forward per layer (one thread): 2.0 (7×7) to 2.6 (56×56): the backward
  has two GEMM sets and four data transforms to the forward's one set and two.
- 1×1 convolutions, strided or with chunks under 512 rows (``ConvPlan.backward_1x1``):
  dW = Xᵀ dz as one GEMM over all N·H·W rows split over the larger of C and F (it was
  per sample: 49-196-row reductions, each 2048×512 product added into a partial),
  dx one GEMM per part (and the forward in chunks of ≥ 512 rows). Layer backward
  old/new, one thread: 7×7 2048→512 2.35 (2.10–2.86), 512→2048 2.12, 14×14 1024→256
  1.36, stride 2 14×14 1024→2048 2.28, 28×28 512→1024 1.2–1.3 (2 threads); backward /
  forward now 1.8–2.1. At 28×28 and 56×56 the chunked backward stays (0.8–0.9× for
  the new path there); its 2–2.5× forward is the GEMMs' speed (the dW and dx shapes
  run at 110–160 GFLOP/s against the forward's 130–180) plus page faults: every array
  over 32 MB (56×56×256 at batch 16: 51 MB) is mapped fresh, ~12 ms of faults each.
- The whole step, old/new Conv2D code swapped in one process, 5 pairs: 1.23
  (1.15–1.25) on one thread (CPU time), 1.12 (1.00–1.62) on two (wall time, load ~4:
  two threads' ratios there are unreliable).
"""

import argparse
import collections
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import resnet50_models  # noqa: E402

TIMES = collections.defaultdict(float)
SHAPES = False  # --shapes: one row per input shape too


def _key(layer):
    name = type(layer).__name__
    ks = getattr(layer, "kernel_size", None)
    if name == "Conv2D":
        name += f" {ks[0]}x{ks[1]}/s{layer.strides[0]}"
    return name


def _wrap(layer):
    _wrap_forward(layer, "forward")
    if hasattr(layer, "forward_chain"):  # a fused chain's run (trainer/engine/fusion.py)
        _wrap_forward(layer, "forward_chain")


def _wrap_forward(layer, attribute):
    forward = getattr(layer, attribute)

    def timed_forward(*a, **k):
        key = _key(layer)
        if SHAPES and hasattr(a[0], "shape"):
            key += " " + "x".join(map(str, a[0].shape[1:]))
        t = time.perf_counter()
        out = forward(*a, **k)
        TIMES[(key, "fwd")] += time.perf_counter() - t
        if out is None:  # forward_chain declined: the layer's forward runs (timed)
            return out
        y, back = out
        if back is None:
            return y, back

        def timed_back(*b, **kb):
            t = time.perf_counter()
            r = back(*b, **kb)
            TIMES[(key, "bwd")] += time.perf_counter() - t
            return r
        if hasattr(back, "preactivation"):
            timed_back.preactivation = back.preactivation
        return y, timed_back

    setattr(layer, attribute, timed_forward)


def _leaves(obj):
    """Every layer that runs as a graph node (nested models opened)."""
    graph = getattr(obj, "graph", None)
    if graph is None:
        yield obj
        return
    for node in graph.nodes:
        yield from _leaves(node.layer)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", default="finetune", choices=("finetune", "finetune-frozen", "infer"))
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--shapes", action="store_true", help="one row per input shape")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the rows and the machine here")
    p.add_argument("--smoke", action="store_true", help="batch 2 at 32², one step")
    a = p.parse_args()
    if a.smoke:
        a.batch, a.size, a.steps = 2, 32, 1
    global SHAPES
    SHAPES = a.shapes
    os.environ["TRAINER_NUM_THREADS"] = str(a.threads)
    from hostinfo import describe

    from trainer.engine.kernels import parallel

    parallel.set_num_threads(a.threads)
    step = resnet50_models.our_step(a.mode, a.batch, a.size)
    step()  # compile / warm
    model = next(c.cell_contents for c in step.__closure__
                 if hasattr(c.cell_contents, "train_on_batch"))
    for layer in _leaves(model):
        _wrap(layer)
    step()
    TIMES.clear()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    total = (time.perf_counter() - t) / a.steps
    per = {k: v / a.steps for k, v in TIMES.items()}
    attributed = sum(per.values())
    print(f"step {total * 1000:.0f} ms, {a.batch / total:.2f} samples/s; "
          f"unattributed {(total - attributed) * 1000:.0f} ms")
    rows = [{"layer": k, "phase": phase, "ms": v * 1000, "share": v / total}
            for (k, phase), v in sorted(per.items(), key=lambda kv: -kv[1])]
    for r in rows:
        print(f"  {r['layer']:28s} {r['phase']}  {r['ms']:7.1f} ms  {100 * r['share']:5.1f}%")
    if a.json:
        meta = {**describe(), "threads": a.threads, "smoke": a.smoke, "mode": a.mode,
                "batch": a.batch, "size": a.size, "steps": a.steps}
        Path(a.json).write_text(json.dumps({"meta": meta, "step_ms": total * 1000,
                                            "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
