"""Where a ResNet50 step's time goes, per layer type, forward vs backward, in one
process: each layer's ``forward`` and the backward closure it returns are wrapped
with a wall-clock timer (fused chains' epilogues fall under "unattributed").

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/profile_resnet50.py \
        [--mode finetune|finetune-frozen|infer] [--batch 16] [--size 224] [--steps 3]
"""

import argparse
import collections
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
    forward = layer.forward

    def timed_forward(*a, **k):
        key = _key(layer)
        if SHAPES and hasattr(a[0], "shape"):
            key += " " + "x".join(map(str, a[0].shape[1:]))
        t = time.perf_counter()
        y, back = forward(*a, **k)
        TIMES[(key, "fwd")] += time.perf_counter() - t
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

    layer.forward = timed_forward


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
    p.add_argument("--mode", default="finetune")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--shapes", action="store_true", help="one row per input shape")
    a = p.parse_args()
    global SHAPES
    SHAPES = a.shapes
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
    for (k, phase), v in sorted(per.items(), key=lambda kv: -kv[1]):
        print(f"  {k:28s} {phase}  {v * 1000:7.1f} ms  {100 * v / total:5.1f}%")


if __name__ == "__main__":
    main()
