"""BatchNormalization while training: the compiled passes (trainer/engine/kernels/
batchnorm.py) against the NumPy lines they replace, in one process (issue 28).

Both run side by side, interleaved (old, new, old, new, ...: ``normalization.
KERNEL_MIN`` switched between calls), so a shared machine's load moves them alike;
the ratio old / new is taken per pair, its median and range reported with the
1-minute load average. Cases: forward + backward at ResNet50's shapes (batch 16,
channels last, float32), the layer alone (``plain``), and as a fused chain's head
with a relu (``relu``) or an Add then a relu (``add``), as trainer/engine/fusion.py
runs them.

``--step``: instead, the whole ResNet50 full fine-tune training step
(benchmarks/resnet50_models.py, batch 16, 224²; old and new BatchNormalization
interleaved over whole steps).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_bn.py [--step]
    python benchmarks/bench_bn.py --smoke --json out.json   # what the tests run
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

SHAPES = [(16, 56, 56, 64), (16, 56, 56, 256), (16, 28, 28, 512), (16, 7, 7, 2048)]
CHAINS = {"plain": (), "relu": ("relu",), "add": ("add", "relu")}
WARM = set()


def case(shape, chain):
    """A function running one forward + backward of a fresh layer's chain."""
    import numpy as np

    from trainer.config.families import layers
    from trainer.engine import fusion

    rng = np.random.default_rng(0)
    layer = layers.get({"BatchNormalization": {}})
    layer.build(shape[1:], rng)
    layer.built = True
    x = rng.normal(1, 2, size=shape).astype(np.float32)
    dy = rng.normal(size=shape).astype(np.float32)
    other = rng.normal(size=shape).astype(np.float32) if "add" in CHAINS[chain] else None
    run = fusion._norm_run(layer, CHAINS[chain])

    def step():
        if chain == "plain":
            y, back = layer.forward(x, True)
            back(dy)
        else:
            y, back = run(x, other, True)
            back(dy)
    return step


def resnet50_step(smoke):
    """One training step of the ResNet50 full fine-tune (batch 2 at 32² in smoke mode)."""
    import resnet50_models

    return resnet50_models.our_step("finetune", 2 if smoke else 16, 32 if smoke else 224)


def timed(step, compiled, repeats):
    from trainer.layers import normalization

    normalization.KERNEL_MIN = KERNEL_MIN if compiled else 1 << 62
    if (step, compiled) not in WARM:
        WARM.add((step, compiled))
        step()  # warm (and compile once)
    t = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - t) / repeats


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pairs", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the rows and the machine here")
    p.add_argument("--smoke", action="store_true", help="small shapes, one pair")
    p.add_argument("--step", action="store_true", help="the whole ResNet50 training step")
    a = p.parse_args()
    os.environ["TRAINER_NUM_THREADS"] = str(a.threads)
    from hostinfo import describe

    from trainer.engine.kernels import parallel
    from trainer.layers import normalization

    global KERNEL_MIN
    KERNEL_MIN = normalization.KERNEL_MIN
    parallel.set_num_threads(a.threads)
    shapes = [(2, 32, 32, 64), (4, 8, 8, 512)] if a.smoke else SHAPES  # compiled sizes
    pairs = 1 if a.smoke else a.pairs
    rows = []
    cases = ([(("resnet50",), "step")] if a.step
             else [(shape, chain) for shape in shapes for chain in CHAINS])
    for shape, chain in cases:
        if a.step:
            step, repeats = resnet50_step(a.smoke), 1
        else:
            step = case(shape, chain)
            repeats = max(1, int(2e7 // (2 * shape[0] * shape[1] * shape[2] * shape[3])))
        old, new, ratio, load = [], [], [], []
        for _ in range(pairs):
            o, n = timed(step, False, repeats), timed(step, True, repeats)
            old.append(o)
            new.append(n)
            ratio.append(o / n)
            load.append(os.getloadavg()[0])
        row = {"shape": list(shape), "chain": chain,
               "old_ms": 1000 * statistics.median(old),
               "new_ms": 1000 * statistics.median(new),
               "speedup": statistics.median(ratio), "min": min(ratio),
               "max": max(ratio), "load": max(load)}
        rows.append(row)
        print(f"{'x'.join(map(str, shape)):>14} {chain:>5}: old {row['old_ms']:7.2f} ms, "
              f"new {row['new_ms']:6.2f} ms, old / new {row['speedup']:.2f} "
              f"({row['min']:.2f}-{row['max']:.2f}), load {row['load']:.2f}", flush=True)
    normalization.KERNEL_MIN = KERNEL_MIN
    if a.json:
        meta = {**describe(), "threads": a.threads, "smoke": a.smoke, "pairs": pairs}
        Path(a.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
