"""Training throughput of the classic Keras CIFAR CNN: trainer's engine vs PyTorch eager.

    python benchmarks/bench_cnn.py [--threads 2] [--batch 128] [--steps 10] [--repeats 3]

Both run in this one process on the same number of threads (OpenBLAS for numpy,
torch.set_num_threads for PyTorch), float32, 32×32×3 inputs, batch 128, RMSprop,
interleaved repeat by repeat; the medians of samples/s and their ratio are printed.
PyTorch is optional (`pip install torch==2.13.0`); without it only ours is measured.
Not run by the tests: timings on a shared machine are noisy.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "cifar_cnn.yaml"


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--profile", action="store_true", help="cProfile our steps instead")
    return p.parse_args()


def ours(batch):
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from trainer import api

    cfg = api.load_config(CONFIG)
    model = api.build(cfg)
    rng = np.random.default_rng(0)
    x = rng.random((batch, 32, 32, 3), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]
    return lambda: model.train_on_batch([x], [y])


def theirs(batch):
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(64 * 6 * 6, 512), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, 10))
    opt = torch.optim.RMSprop(net.parameters(), lr=1e-4, alpha=0.9, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def rate(step, batch, steps):
    step()  # warm-up (allocations, caches)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t)


def main():
    args = parse()
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)  # before numpy is imported
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    our_step = ours(args.batch)
    if args.profile:
        import cProfile
        import pstats
        our_step()
        cProfile.runctx("for _ in range(steps): step()", {},
                        {"step": our_step, "steps": args.steps}, "/tmp/bench_cnn.prof")
        pstats.Stats("/tmp/bench_cnn.prof").sort_stats("tottime").print_stats(20)
        return
    their_step = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(args.threads)
            their_step = theirs(args.batch)
        except ImportError:
            print("torch is not installed: measuring trainer only")
    ours_r, theirs_r = [], []
    for k in range(args.repeats):
        ours_r.append(rate(our_step, args.batch, args.steps))
        line = f"repeat {k + 1}: trainer {ours_r[-1]:8.1f} samples/s"
        if their_step is not None:
            theirs_r.append(rate(their_step, args.batch, args.steps))
            line += f"   pytorch {theirs_r[-1]:8.1f} samples/s"
        print(line, flush=True)
    a = statistics.median(ours_r)
    print(f"median: trainer {a:.1f} samples/s", end="")
    if theirs_r:
        b = statistics.median(theirs_r)
        print(f", pytorch {b:.1f} samples/s, ratio trainer/pytorch {a / b:.2f}")
    else:
        print()


if __name__ == "__main__":
    main()
