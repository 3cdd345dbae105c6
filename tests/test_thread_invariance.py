"""A run's numbers do not depend on the number of engine threads: the same config and
seed give the same weights and history, bit for bit, on 1 and 2 threads (a sweep's
trial on 1 thread under `--workers 2` reproduces the same config run alone on 2).

The engine cuts its parallel regions into parts fixed by the shapes and the machine
(``parallel.ranges``), never by the thread count; these models are big enough that
Dense products, LSTM time loops, convolutions and batched predictions are cut."""

import subprocess
import sys

import numpy as np
import pytest

from trainer.engine.kernels import parallel

pytestmark = pytest.mark.skipif(parallel.MAX_PARTS < 2,
                                reason="a machine with one CPU never cuts a region")

SEQUENCE = """\
seed: 3
data:
  train: {path: data.npz, x: xs, y: y}
  validation: {path: data.npz, x: xs_val, y: y_val}
model:
  input_shape: [8, 16]
  layers:
    - LSTM: {units: 32, return_sequences: true}
    - Flatten
    - Dense: {units: 256, activation: relu}
    - Dropout: {rate: 0.2}
    - Dense: {units: 10, activation: softmax}
compile: {loss: sparse_categorical_crossentropy, optimizer: adam, metrics: [accuracy]}
fit: {epochs: 2, batch_size: 256}
"""
IMAGES = """\
seed: 3
data:
  train: {path: data.npz, x: xi, y: y}
  validation: {path: data.npz, x: xi_val, y: y_val}
model:
  input_shape: [12, 12, 3]
  layers:
    - Conv2D: {filters: 16, kernel_size: 3, activation: relu, padding: same}
    - MaxPooling2D
    - Conv2D: {filters: 64, kernel_size: 3, activation: relu, padding: same}
    - Conv2D: {filters: 64, kernel_size: 3, activation: relu, padding: same}
    - BatchNormalization
    - GlobalAveragePooling2D
    - Dense: {units: 10, activation: softmax}
compile: {loss: sparse_categorical_crossentropy, optimizer: adam}
fit: {epochs: 1, batch_size: 128}
"""


def _fit(folder, config, threads):
    import os

    env = {**os.environ, "TRAINER_NUM_THREADS": str(threads)}
    result = subprocess.run([sys.executable, "-m", "trainer", "fit", config, "--run-dir",
                             f"run{threads}", "-q"], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return folder / f"run{threads}"


def _weights(run):
    import h5py

    found = {}
    with h5py.File(run / "checkpoints" / "final.h5", "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f" else None)
    return found


@pytest.mark.parametrize("config", [SEQUENCE, IMAGES], ids=["dense_lstm", "cnn"])
def test_one_and_two_threads_give_the_same_bits(tmp_path, config):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", xs=rng.normal(size=(600, 8, 16)).astype(np.float32),
             xs_val=rng.normal(size=(300, 8, 16)).astype(np.float32),
             xi=rng.random((600, 12, 12, 3), dtype=np.float32),
             xi_val=rng.random((300, 12, 12, 3), dtype=np.float32),
             y=rng.integers(0, 10, 600), y_val=rng.integers(0, 10, 300))
    (tmp_path / "config.yaml").write_text(config)
    one, two = (_fit(tmp_path, "config.yaml", t) for t in (1, 2))
    a, b = _weights(one), _weights(two)
    assert a and set(a) == set(b)
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    assert (one / "history.csv").read_text() == (two / "history.csv").read_text()
