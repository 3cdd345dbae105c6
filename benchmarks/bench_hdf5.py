"""Train an MLP for one epoch from an HDF5 file larger than memory should need, and
compare with the same kind of data in memory.

    python benchmarks/bench_hdf5.py                 # 4 GiB file in /tmp, deleted after
    python benchmarks/bench_hdf5.py --gib 0.1       # a quick try
    python benchmarks/bench_hdf5.py --smoke --json out.json   # what the tests run

``--smoke``: 2048 rows, a 1024-row slice, batch 256 — the whole path in a few seconds
(tests/test_benchmarks_smoke.py runs it); its numbers mean nothing. ``--json FILE``
writes every case's figures and the machine (CPU model, SIMD flags, load).

Reports, for each case, the peak resident memory of the training process (VmHWM of a
fresh subprocess), the wall time of the whole fit (reading, preprocessing statistics,
the epoch) and of the epoch alone, and samples per second in the epoch. The epoch is
timed by a callback (benchmarks/epoch_timer.py: on_train_begin to on_train_end, so
with its end-of-epoch checkpoint), passed to ``trainer.app.fit.fit``:

- ``hdf5``: the whole file, read lazily in chunk-aligned blocks, standardized per
  batch (statistics from one streaming pass, included in the time).
- ``hdf5-slice``: the first ``--slice-rows`` rows as their own HDF5 file, lazily.
- ``memory``: the same slice as a .npy file loaded whole (``lazy: false``).

The files are written to a fresh folder inside --dir (default: the system's temporary
folder), removed at the end. Timings are noisy on a shared machine: the tests run the
smoke mode only, for exit status and fields, never for speed.

The last measured table (2026-11-26, the 4 GiB default) is in benchmarks/README.md.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from hostinfo import describe  # this folder is sys.path[0]

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
    from epoch_timer import EpochTimer  # this folder is sys.path[0]
    from trainer.app import fit as api

    cfg = api.load_config(config_path)
    rss_before = peak_rss_mb()
    timer = EpochTimer()
    start = time.perf_counter()
    run, logs = api.fit(cfg, run_dir=Path(config_path).parent / f"run-{Path(config_path).stem}",
                        verbose=0, callbacks=[timer])
    seconds = time.perf_counter() - start
    if timer.train_seconds is None:
        sys.exit("bench_hdf5: the EpochTimer callback never saw on_train_end; the "
                 "training loop no longer calls the callback hooks it documents")
    status = json.loads((run.path / "run.json").read_text())["status"]
    print(json.dumps({"seconds": seconds, "epoch_seconds": timer.train_seconds,
                      "loss": logs["loss"], "accuracy": logs["accuracy"],
                      "peak_rss_mb": peak_rss_mb(), "rss_after_imports_mb": rss_before,
                      "status": status}))


class CaseFailed(Exception):
    pass


def case(folder, name, source, rows, batch):
    cfg = folder / f"{name}.yaml"
    cfg.write_text(CONFIG.format(source=json.dumps(source), batch=batch))
    out = subprocess.run([sys.executable, __file__, "--train", str(cfg)],
                         capture_output=True, text=True, env={**os.environ,
                                                              "PYTHONPATH": str(ROOT)})
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        tail = "\n".join((out.stderr or out.stdout).strip().splitlines()[-8:])
        raise CaseFailed(f"case {name}: the training process failed (exit "
                         f"{out.returncode}):\n{tail}")
    result = json.loads(lines[-1])
    result.update(case=name, rows=rows, samples_per_s=rows / result["epoch_seconds"])
    print(json.dumps(result), flush=True)
    return result


SMOKE = {"rows": 2048, "slice_rows": 1024, "batch": 256}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=4.0, help="size of x in the big file")
    ap.add_argument("--slice-rows", type=int, default=262144)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--dir", default=None,
                    help="make the scratch folder in here (default: the system's temp folder)")
    ap.add_argument("--smoke", action="store_true",
                    help=f"the smallest sizes ({SMOKE['rows']} rows, a {SMOKE['slice_rows']}-row "
                         f"slice, batch {SMOKE['batch']}): checks the script runs, measures "
                         f"nothing")
    ap.add_argument("--json", metavar="FILE", help="write the results and the machine here")
    ap.add_argument("--train", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.train:
        return train(args.train)
    rows = int(args.gib * (1 << 30)) // (4 * FEATURES)
    if args.smoke:
        rows, args.slice_rows, args.batch = SMOKE["rows"], SMOKE["slice_rows"], SMOKE["batch"]
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="trainer_bench_hdf5_", dir=args.dir))
    try:
        results, size = measure(folder, rows, args)
    except CaseFailed as exc:
        sys.exit(f"bench_hdf5: {exc}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if args.smoke:
        print("\n(smoke mode: sizes too small for the numbers to mean anything)")
    print("\ncase        rows      data GB  peak RSS MB  total s  epoch s  samples/s")
    for r in results:
        print(f"{r['case']:<11} {r['rows']:>9} {r['data_gb']:>8.2f} {r['peak_rss_mb']:>12.0f} "
              f"{r['seconds']:>8.1f} {r['epoch_seconds']:>8.1f} "
              f"{r['samples_per_s']:>10.0f}")
    if args.json:
        meta = {**describe(), "smoke": args.smoke, "rows": rows, "slice_rows": args.slice_rows,
                "batch": args.batch, "features": FEATURES, "file_bytes": size}
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": results}, indent=1))


def measure(folder, rows, args):
    """Write the files, train each case in its own process: (results, big file's bytes)."""
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
    for r in results:
        r["data_gb"] = size / 1e9 if r["case"] == "hdf5" else r["rows"] * FEATURES * 4 / 1e9
    return results, size


if __name__ == "__main__":
    main()
