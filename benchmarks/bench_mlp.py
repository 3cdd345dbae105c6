"""MLP throughput: our engine vs PyTorch eager on the same threads, same run.

    python benchmarks/bench_mlp.py [--repeats 5] [--seconds 2]

Models (issue 14): MLP 784-512-512-10 with Dropout 0.2, Adam, batch 128 (training and
inference at batch 1024), and a tiny MLP 20-64-10 with SGD at batch 32 (framework
overhead). Prints samples/s medians and the ratio ours / PyTorch.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def our_model(layers, in_dim, optimizer):
    from trainer.builder import build_model
    from trainer.config import from_dict

    cfg = from_dict({"data": {"train": {"dataset": "iris"}}, "model": {
        "input_shape": [in_dim], "layers": layers},
        "compile": {"loss": "categorical_crossentropy", "optimizer": optimizer}},
        Path("bench.yaml"))
    return build_model(cfg)


def timed(step, seconds):
    """Samples/s of `step` (which returns its batch size) over about `seconds`."""
    step()  # warm-up (and Numba compilation)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        n += step()
    return n / (time.perf_counter() - start)


def ours(spec, batch, seconds, train):
    model = our_model(*spec)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, spec[1])).astype(np.float32)
    units = model.outputs[0].units
    y = np.eye(units, dtype=np.float32)[rng.integers(0, units, batch)]

    def step():
        if train:
            model.train_on_batch([x], [y])
        else:
            model.predict_on_batch([x])
        return batch
    return timed(step, seconds)


def theirs(torch_layers, in_dim, opt, batch, seconds, train):
    import torch
    net = torch.nn.Sequential(*torch_layers())
    optimizer = opt(net.parameters())
    x = torch.randn(batch, in_dim)
    y = torch.randint(0, 10, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        if train:
            net.train()
            optimizer.zero_grad()
            loss_fn(net(x), y).backward()
            optimizer.step()
        else:
            net.eval()
            with torch.no_grad():
                net(x)
        return batch
    return timed(step, seconds)


def cases():
    import torch.nn as nn
    import torch.optim as optim
    mlp = ([{"Dense": {"units": 512, "activation": "relu"}}, {"Dropout": {"rate": 0.2}},
            {"Dense": {"units": 512, "activation": "relu"}}, {"Dropout": {"rate": 0.2}},
            {"Dense": {"units": 10, "activation": "softmax"}}], 784, "adam")
    torch_mlp = lambda: [nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2),  # noqa: E731
                         nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, 10)]
    tiny = ([{"Dense": {"units": 64, "activation": "relu"}},
             {"Dense": {"units": 10, "activation": "softmax"}}], 20, {"SGD": {"lr": 0.01}})
    torch_tiny = lambda: [nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 10)]  # noqa: E731
    adam = lambda p: optim.Adam(p, lr=1e-3, eps=1e-7)  # noqa: E731
    sgd = lambda p: optim.SGD(p, lr=0.01)  # noqa: E731
    return [
        ("MLP 784-512-512-10 train b128", mlp, torch_mlp, 784, adam, 128, True, 1.0),
        ("MLP 784-512-512-10 infer b1024", mlp, torch_mlp, 784, adam, 1024, False, 1.0),
        ("tiny MLP 20-64-10 train b32", tiny, torch_tiny, 20, sgd, 32, True, 2.0),
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.5)
    args = parser.parse_args()
    try:
        import torch
        torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "2")))
        have_torch = True
    except ImportError:
        have_torch = False
    print(f"{'model':36s} {'ours/s':>10s} {'torch/s':>10s} {'ratio':>7s} {'target':>7s}")
    for name, spec, tl, in_dim, opt, batch, train, target in (cases() if have_torch else []):
        a, b = [], []
        for _ in range(args.repeats):  # interleaved, so drift hits both
            a.append(ours(spec, batch, args.seconds, train))
            b.append(theirs(tl, in_dim, opt, batch, args.seconds, train))
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"{name:36s} {ma:10.0f} {mb:10.0f} {ma / mb:7.2f} {target:7.1f}")


if __name__ == "__main__":
    main()
