"""MPI edges (issue 27): a noise layer inside TimeDistributed, and a last batch
smaller than the world (one rank's share is empty), reach what one process reaches."""

import numpy as np
import pytest

pytest.importorskip("mpi4py")
from test_mpi import MPIEXEC, history, max_relative, trainer, weights  # noqa: E402

pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec on PATH")

SEQUENCE_CONFIG = """\
name: mpi-td
seed: 11
dtype: float64
data:
  train: {path: seq.npz, x: x, y: y}
  validation: {path: seq.npz, x: xv, y: yv}
model:
  input_shape: [5, 4]
  layers:
    - TimeDistributed: {layer: {GaussianNoise: {stddev: 0.2}}}
    - TimeDistributed: {layer: {Dropout: {rate: 0.25}}}
    - TimeDistributed: {layer: {Dense: {units: 6, activation: tanh}}}
    - LSTM: {units: 5}
    - Dense: {units: 2, activation: softmax}
compile:
  loss: sparse_categorical_crossentropy
  optimizer: {Adam: {lr: 0.02}}
  metrics: [accuracy]
fit: {epochs: 3, batch_size: 8}
"""


def test_noise_inside_time_distributed_with_an_empty_rank_share(tmp_path):
    """26 training rows in batches of 8: the last batch has 2 rows, so under 3 ranks
    one rank holds none of them; the masks are drawn for the global batch, so the run
    is one process's."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(36, 5, 4))
    y = (x[:, :, 0].sum(axis=1) > 0).astype(np.int64)
    np.savez(tmp_path / "seq.npz", x=x[:26], y=y[:26], xv=x[26:], yv=y[26:])
    (tmp_path / "config.yaml").write_text(SEQUENCE_CONFIG)
    runs = {}
    for key, ranks in (("one", None), ("three", 3)):
        result = trainer(tmp_path, "fit", "config.yaml", "--run-dir", key, "-q",
                         ranks=ranks)
        assert result.returncode == 0, result.stderr
        runs[key] = tmp_path / key
    a, b = weights(runs["one"]), weights(runs["three"])
    assert set(a) == set(b) and len(a) >= 5
    assert max_relative(a, b) <= 1e-5
    for ra, rb in zip(history(runs["one"]), history(runs["three"]), strict=True):
        for key in ("loss", "val_loss"):
            assert float(ra[key]) == pytest.approx(float(rb[key]), rel=1e-6), key


def test_debug_shows_one_ranks_traceback_and_stops_every_rank(tmp_path):
    """`--debug` lets one rank's error through with its traceback; the other ranks,
    waiting in a collective for it, are stopped (they hung before), and the rank does
    not go on to report the error a second time (MPICH's MPI_Abort returns)."""
    from test_mpi import CONFIG

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6))
    x[300, 1] = np.nan  # read lazily, inside rank 1's share of a batch of 64
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", (x[:, 0] > 0).astype(np.int64))
    config = CONFIG.replace("train: {path: data.npz, x: x, y: y}",
                            "train: {path: x.npy, y_path: y.npy}")
    config = config.replace("  validation: {path: data.npz, x: xv, y: yv}\n", "")
    (tmp_path / "config.yaml").write_text(config.replace("batch_size: 16", "batch_size: 64")
                                          .replace("units: 3", "units: 2"))
    result = trainer(tmp_path, "--debug", "fit", "config.yaml", "--run-dir", "run", "-q",
                     ranks=2, timeout=60)
    assert result.returncode == 3, result.stderr
    assert result.stderr.count("Traceback (most recent call last)") == 1, result.stderr
    assert "row 300" in result.stderr and "stopping every rank" in result.stderr
    assert "error: " not in result.stderr  # the one report is the traceback


def test_abort_waits_until_the_launcher_has_read_the_report():
    """What a rank wrote before MPI_Abort reaches the launcher: abort waits while its
    stdout/stderr pipe still holds unread bytes (lost under load before), never long."""
    import os
    import threading
    import time

    from trainer.distributed.world import drained

    r, w = os.pipe()
    try:
        os.write(w, b"error: the report")
        reader = threading.Timer(0.2, lambda: os.read(r, 100))
        reader.start()
        start = time.monotonic()
        drained(w, timeout=5)
        assert 0.15 < time.monotonic() - start < 2  # returned once the bytes were read
        reader.join()
        os.write(w, b"x")
        start = time.monotonic()
        drained(w, timeout=0.3)  # nobody reads: gives up after the timeout
        assert time.monotonic() - start < 1
    finally:
        os.close(r)
        os.close(w)
