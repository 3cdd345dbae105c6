"""Batch inference as users run it, end to end (issue 28): ``trainer predict CONFIG
--input x.npy --output out.npy`` beside ONNX Runtime doing the same job in a script of
its own (load the model trainer exports, ``np.load`` the input, run it in batches of
1024 rows, ``np.save`` the output), each a fresh process, and beside the engine's
in-process ``predict_on_batch`` at batch 1024 (run.py's ``infer`` child) in the same
interleave.

A rate is the extra rows of a big input over a small one divided by the extra wall
seconds, so what does not grow with the input (the interpreter, imports, building the
model, loading the Numba cache, making the ONNX Runtime session) cancels: rows
(BIG - 1) × 1024 / (t(BIG × 1024 rows) - t(1024 rows)), BIG 33 batches for the CNN and
257 for the MLP (1-3.5 s of extra work at the engine's rates). Targets: ``trainer predict`` within
10% of the in-process rate, and at least ONNX Runtime's end-to-end rate.

A helper of run.py's ``predict`` case; ``ort_main`` is the ONNX Runtime peer's
process (``ort_command`` starts it with MODEL.onnx X.npy OUT.npy --threads N --batch B).
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

MODELS = ("cnn", "mlp")
#: rows a batch, and the batches of the small and the big input per model: the big
#: one's extra rows take 1-3.5 s at the engine's rates, well above a process start's
#: noise (8 extra batches of the MLP were ~30 ms: its rates moved 82k-498k between
#: repeats; with 9 CNN batches, ~0.9 s after the convolution chains, the CLI's rate
#: still moved 6.1k-19.9k in one run)
BATCH, SMALL, BIG = 1024, 1, {"cnn": 33, "mlp": 257}


def setup(tmp, case, layers, shape, batch, run_env):
    """Write the case's config, its tiny training file (the config must name one;
    predict never reads it), the small and big inputs, and the ONNX model trainer
    exports from the config (the same fresh initialisation ``trainer predict`` uses)."""
    tmp = Path(tmp) / case
    tmp.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.savez(tmp / "train.npz", x=rng.random((8, *shape), dtype=np.float32),
             y=np.eye(10, dtype=np.float32)[rng.integers(0, 10, 8)])
    config = {"seed": 0, "data": {"train": {"path": "train.npz", "x": "x", "y": "y"}},
              "model": {"input_shape": list(shape), "layers": layers},
              "compile": {"loss": "categorical_crossentropy", "optimizer": "adam"},
              "fit": {"batch_size": batch}}
    (tmp / "model.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for name, batches in (("small", SMALL), ("big", BIG[case])):
        np.save(tmp / f"x_{name}.npy", rng.random((batches * batch, *shape), dtype=np.float32))
    onnx = tmp / "model.onnx"
    proc = run_env([sys.executable, "-m", "trainer", "export", str(tmp / "model.yaml"),
                    str(onnx)])
    if proc.returncode != 0:
        raise RuntimeError(f"trainer export failed (exit {proc.returncode}):\n"
                           + "\n".join(proc.stderr.strip().splitlines()[-8:]))
    return tmp


def ours_command(folder, size, batch):
    return [sys.executable, "-m", "trainer", "predict", str(folder / "model.yaml"),
            "--input", str(folder / f"x_{size}.npy"), "--output",
            str(folder / f"out_ours_{size}.npy"), "--batch-size", str(batch)]


def ort_command(folder, size, batch, threads):
    here = str(Path(__file__).resolve().parent)
    start = f"import sys; sys.path.insert(0, {here!r}); import predict_cli; predict_cli.ort_main()"
    return [sys.executable, "-c", start, str(folder / "model.onnx"),
            str(folder / f"x_{size}.npy"), str(folder / f"out_ort_{size}.npy"),
            "--threads", str(threads), "--batch", str(batch)]


def timed(command, run_env):
    """Wall seconds of one process, launch to exit."""
    t0 = time.perf_counter()
    proc = run_env(command)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:4])} failed (exit {proc.returncode}):\n"
                           + "\n".join(proc.stderr.strip().splitlines()[-8:]))
    return seconds


def rate(case, small_s, big_s, batch):
    extra = big_s - small_s
    return (BIG[case] - SMALL) * batch / extra if extra > 0 else None


def outputs(folder):
    """What the last processes wrote: the rows of ``trainer predict``'s big output and
    its largest difference from ONNX Runtime's on the same input (the same exported
    weights: a check that both ran the same model), None where one is missing."""
    out = {"cli_rows": None, "max_abs_diff_onnxruntime": None}
    ours = folder / "out_ours_big.npy"
    if ours.exists():
        a = np.load(ours, allow_pickle=False)
        out["cli_rows"] = int(a.shape[0])
        ort = folder / "out_ort_big.npy"
        if ort.exists():
            out["max_abs_diff_onnxruntime"] = float(
                np.max(np.abs(a - np.load(ort, allow_pickle=False))))
    return out


def ort_main(argv=None):
    """The ONNX Runtime peer: what a user's script serving the exported model does."""
    p = argparse.ArgumentParser(description="ONNX Runtime batch inference, end to end")
    p.add_argument("model")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=BATCH)
    args = p.parse_args(argv)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.load(args.input, allow_pickle=False)
    out = np.concatenate([session.run(None, {name: x[i:i + args.batch]})[0]
                          for i in range(0, len(x), args.batch)])
    np.save(args.output, out)
