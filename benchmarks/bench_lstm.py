"""LSTM training throughput: trainer's engine beside PyTorch's nn.LSTM (CPU, same threads).

One training step = forward over the whole sequence, backward from the gradient of the
last output (to the weights and to the input sequence), and a plain SGD update; float32, batch 64, 100 steps, 128
inputs, 256 units by default (both use sigmoid gates, PyTorch's only choice). Rounds
of the two alternate, so a load that drifts hits both alike; prints samples/s of each
(median over ``--repeats`` rounds) and the median of the per-round ratios ours /
PyTorch's (the machine may be shared and noisy). PyTorch is optional:
``pip install torch==2.13.0`` (a CPU build). Not run by the tests.

    python benchmarks/bench_lstm.py [--threads 2] [--repeats 5] [--steps 10]
"""

import argparse
import os
import statistics
import sys
import time


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--time", type=int, default=100)
    p.add_argument("--inputs", type=int, default=128)
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="timed rounds; the median is kept")
    p.add_argument("--steps", type=int, default=10, help="training steps per round")
    return p.parse_args()


def rate(step, args):
    """Samples per second over one round of ``args.steps`` training steps."""
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    return args.steps * args.batch / (time.perf_counter() - t0)


def ours(args):
    import numpy as np

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from trainer.registries import layers

    rng = np.random.default_rng(0)
    layer = layers.get({"LSTM": {"units": args.units, "recurrent_activation": "sigmoid"}})
    layer.build((args.time, args.inputs), rng)
    x = rng.normal(size=(args.batch, args.time, args.inputs)).astype(np.float32)
    dy = rng.normal(size=(args.batch, args.units)).astype(np.float32)

    def step():
        layer.zero_grads()
        _, back = layer.forward(x, training=True)
        back(dy)
        for name, p in layer.params.items():
            p -= np.float32(1e-3) * layer.grads[name]

    return step


def pytorch(args):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(args.inputs, args.units, batch_first=True)
    opt = torch.optim.SGD(lstm.parameters(), lr=1e-3)
    # the input gradient too, as ours computes it (an LSTM after an Embedding needs it)
    x = torch.randn(args.batch, args.time, args.inputs, requires_grad=True)
    dy = torch.randn(args.batch, args.units)

    def step():
        opt.zero_grad()
        x.grad = None
        out, _ = lstm(x)
        out[:, -1].backward(dy)
        opt.step()

    return step


def main():
    args = parse()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before NumPy loads its BLAS
    print(f"LSTM batch {args.batch}, {args.time} steps, {args.inputs} inputs, "
          f"{args.units} units, float32, {args.threads} threads, median of "
          f"{args.repeats} rounds x {args.steps} steps")
    steps = {"trainer": ours(args), "pytorch": pytorch(args)}
    steps = {k: v for k, v in steps.items() if v is not None}
    for step in steps.values():
        step()  # warm-up: allocations, lazy imports, Numba compile
    rates = {k: [] for k in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            rates[name].append(rate(step, args))
    for name, rs in rates.items():
        print(f"{name}: {statistics.median(rs):8.1f} samples/s   "
              f"(rounds: {', '.join(f'{r:.0f}' for r in rs)})")
    if "pytorch" not in rates:
        print("pytorch: not installed (pip install torch==2.13.0)")
        return
    ratios = [a / b for a, b in zip(rates["trainer"], rates["pytorch"])]
    print(f"ratio trainer/pytorch: {statistics.median(ratios):.2f} (median of per-round "
          f"ratios {', '.join(f'{r:.2f}' for r in ratios)})")

if __name__ == "__main__":
    main()
