"""Train an MLP for one epoch from an HDF5 file larger than memory should need, and
compare with the same kind of data in memory.

    python benchmarks/bench_hdf5.py                 # 4 GiB file in /tmp, deleted after
    python benchmarks/bench_hdf5.py --gib 0.1       # a quick try

Reports, for each case, the peak resident memory of the training process (VmHWM of a
fresh subprocess), the wall time of the whole fit (reading, preprocessing statistics,
the epoch) and of the epoch alone, and samples per second in the epoch:

- ``hdf5``: the whole file, read lazily in chunk-aligned blocks, standardized per
  batch (statistics from one streaming pass, included in the time).
- ``hdf5-slice``: the first ``--slice-rows`` rows as their own HDF5 file, lazily.
- ``memory``: the same slice as a .npy file loaded whole (``lazy: false``).

The file is written to --dir (default /tmp/trainer_bench_hdf5) and removed at the end.
Timings are noisy on a shared machine; this is not part of the tests.

Measured 2026-11-26 (2 cores shared with other jobs; MLP 256-32-10, batch 1024,
standardize per batch; x float32 (rows, 256), 1 MiB HDF5 chunks):

    case        rows      data GB  peak RSS MB  total s  epoch s  samples/s
    hdf5          4194304     4.33          225    239.5    195.8      21421
    hdf5-slice     262144     0.27          143     12.2     10.1      25871
    memory         262144     0.27          813     19.1      9.9      26608
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FEATURES = 256
CHUNK_ROWS = 1024

CONFIG = """
seed: 0
data:
  train: {source}
  preprocess:
    x: [standardize]
model:
  input_shape: [%d]
  layers:
    - Dense: {{units: 32, activation: relu}}
    - Dense: {{units: 10, activation: softmax}}
compile:
  loss: sparse_categorical_crossentropy
  optimizer: {{Adam: {{lr: 0.001}}}}
  metrics: [accuracy]
fit: {{epochs: 1, batch_size: {batch}, verbose: 0}}
""" % FEATURES


def write_h5(path, rows, seed=0):
    import h5py

    rng = np.random.default_rng(seed)
    w = rng.normal(size=(FEATURES, 10)).astype(np.float32)
    with h5py.File(path, "w") as f:
        x = f.create_dataset("x", (rows, FEATURES), np.float32,
                             chunks=(min(CHUNK_ROWS, rows), FEATURES))
        y = f.create_dataset("y", (rows,), np.int64, chunks=(min(CHUNK_ROWS * 64, rows),))
        step = CHUNK_ROWS * 64
        for start in range(0, rows, step):
            n = min(step, rows - start)
            xb = rng.standard_normal((n, FEATURES), dtype=np.float32) * 2 + 1
            x[start:start + n] = xb
            y[start:start + n] = np.argmax(xb @ w, axis=1)


def peak_rss_mb():
    """VmHWM of this process. (ru_maxrss is no good here: Linux carries it over from
    the parent through fork and exec.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def train(config_path):
    """In a fresh process: fit one epoch, print peak RSS and throughput as JSON."""
    sys.path.insert(0, str(ROOT))
    from trainer.app import fit as api
    from trainer.training import loop as training

    cfg = api.load_config(config_path)
    rss_before = peak_rss_mb()
    loop_seconds = []
    run_fit = training.Loop.run_fit

    def timed(self):
        t = time.perf_counter()
        try:
            return run_fit(self)
        finally:
            loop_seconds.append(time.perf_counter() - t)

    training.Loop.run_fit = timed
    start = time.perf_counter()
    run, logs = api.fit(cfg, run_dir=Path(config_path).parent / f"run-{Path(config_path).stem}",
                        verbose=0)
    seconds = time.perf_counter() - start
    status = json.loads((run.path / "run.json").read_text())["status"]
    print(json.dumps({"seconds": seconds, "epoch_seconds": loop_seconds[0],
                      "loss": logs["loss"], "accuracy": logs["accuracy"],
                      "peak_rss_mb": peak_rss_mb(), "rss_after_imports_mb": rss_before,
                      "status": status}))


def case(folder, name, source, rows, batch):
    cfg = folder / f"{name}.yaml"
    cfg.write_text(CONFIG.format(source=json.dumps(source), batch=batch))
    out = subprocess.run([sys.executable, __file__, "--train", str(cfg)], check=True,
                         capture_output=True, text=True, env={**os.environ,
                                                              "PYTHONPATH": str(ROOT)})
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(case=name, rows=rows, samples_per_s=rows / result["epoch_seconds"])
    print(json.dumps(result), flush=True)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=4.0, help="size of x in the big file")
    ap.add_argument("--slice-rows", type=int, default=262144)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--dir", default="/tmp/trainer_bench_hdf5")
    ap.add_argument("--train", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.train:
        return train(args.train)
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        rows = int(args.gib * (1 << 30)) // (4 * FEATURES)
        t = time.perf_counter()
        write_h5(folder / "big.h5", rows)
        size = (folder / "big.h5").stat().st_size
        print(json.dumps({"wrote": str(folder / "big.h5"), "rows": rows,
                          "bytes": size, "seconds": time.perf_counter() - t}), flush=True)
        n = min(args.slice_rows, rows)
        write_h5(folder / "slice.h5", n)
        import h5py
        with h5py.File(folder / "slice.h5") as f:
            np.save(folder / "slice_x.npy", f["x"][:])
            np.save(folder / "slice_y.npy", f["y"][:])
        results = [
            case(folder, "hdf5", {"path": str(folder / "big.h5"), "y": "y"}, rows, args.batch),
            case(folder, "hdf5-slice", {"path": str(folder / "slice.h5"), "y": "y"}, n,
                 args.batch),
            case(folder, "memory", {"path": str(folder / "slice_x.npy"),
                                    "y_path": str(folder / "slice_y.npy"), "lazy": False},
                 n, args.batch),
        ]
        print("\ncase        rows      data GB  peak RSS MB  total s  epoch s  samples/s")
        for r in results:
            gb = size / 1e9 if r["case"] == "hdf5" else r["rows"] * FEATURES * 4 / 1e9
            print(f"{r['case']:<11} {r['rows']:>9} {gb:>8.2f} {r['peak_rss_mb']:>12.0f} "
                  f"{r['seconds']:>8.1f} {r['epoch_seconds']:>8.1f} "
                  f"{r['samples_per_s']:>10.0f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
