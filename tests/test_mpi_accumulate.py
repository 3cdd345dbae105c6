"""Gradient accumulation under MPI, and the float32 allreduce buffer: each micro-batch
split over the ranks, one fused allreduce per optimizer step; batch_size B with k
steps on N ranks reaches what one process with batch k·B reaches (float64), resumes
with another rank count, and BatchNormalization's per-micro-batch statistics are
synchronised over the ranks. Real `mpiexec` subprocesses, as tests/test_mpi.py."""

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("mpi4py")
from test_mpi import CONFIG, _env, history, max_relative, trainer, weights  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("mpiexec") is None, reason="no mpiexec on PATH")

NO_BN = CONFIG.replace("    - BatchNormalization\n", "")
ACC = ["--set", "fit.batch_size=8", "--set", "fit.accumulate_steps=2"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mpi_acc")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 6))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
    # 60 training rows: steps of 16, 16, 16, 12 rows; micro-batches of 8 (the last 4)
    np.savez(folder / "data.npz", x=x[:60], y=y[:60], xv=x[60:], yv=y[60:])
    (folder / "bn.yaml").write_text(CONFIG)
    (folder / "plain.yaml").write_text(NO_BN)
    return folder


def fit(project, config, run, *sets, ranks=None):
    result = trainer(project, "fit", config, "--run-dir", run, "-q", *sets, ranks=ranks)
    assert result.returncode == 0, result.stderr
    return project / run


@pytest.fixture(scope="module")
def big(project):
    """One process, the whole batch of 16 in one step: what accumulation must reach."""
    return fit(project, "plain.yaml", "big")


def assert_close(run, reference, weights_tol, loss_tol):
    a, b = weights(reference), weights(run)
    assert set(a) == set(b) and len(a) >= 4
    assert max_relative(a, b) <= weights_tol
    ha, hb = history(reference), history(run)
    assert len(ha) == len(hb) == 3
    for ra, rb in zip(ha, hb):
        for key in ("loss", "val_loss"):
            x, y = float(ra[key]), float(rb[key])
            assert abs(x - y) <= loss_tol * abs(x), (key, x, y)


def test_micro_batches_over_ranks_reach_the_big_batch_and_resume_with_another_count(
        project, big):
    # 2 ranks × micro-batches of 8 (4 rows a rank) for 2 epochs, then 3 ranks (3/3/2)
    fit(project, "plain.yaml", "acc", *ACC, "--set", "fit.epochs=2", ranks=2)
    result = trainer(project, "fit", "--resume", "acc", "--set", "fit.epochs=3", "-q",
                     ranks=3)
    assert result.returncode == 0, result.stderr
    assert_close(project / "acc", big, 1e-10, 1e-10)


def test_a_float32_buffer_moves_half_the_bytes_and_stays_close(project, big):
    run = fit(project, "plain.yaml", "acc32", *ACC, "--set", "fit.allreduce_dtype=float32",
              ranks=2)
    a, b = weights(big), weights(run)
    assert any(not np.array_equal(a[k], b[k]) for k in a)  # float32 rounding: not float64's
    # the gradient sums rounded to float32 (~6e-8), 12 Adam steps later: within the
    # issue's tolerances still (measured: 8e-7 on weights, 2e-8 on losses)
    assert_close(run, big, 1e-5, 1e-6)


def test_batch_normalization_statistics_per_micro_batch_are_synchronised(project):
    # the micro-batch's global mean and variance: 2 ranks equal one process, both
    # accumulating (BatchNormalization is why (B, k) is not (k·B, 1) here)
    one = fit(project, "bn.yaml", "bn-one", *ACC)
    two = fit(project, "bn.yaml", "bn-two", *ACC, ranks=2)
    assert_close(two, one, 1e-10, 1e-10)


STEP = """\
import json
from pathlib import Path

import numpy as np

from trainer.build.builder import build_model
from trainer.config.loader import from_dict
from trainer.distributed.world import current
from trainer.training import data_parallel
from trainer.training.loop import random_streams

world = current()
cfg = from_dict({{"data": {{"train": {{"dataset": "iris"}}}}, "dtype": "float64",
                 "model": {{"input_shape": [6], "layers": [
                     {{"Dense": {{"units": 12, "activation": "relu"}}}},
                     {{"Dropout": 0.3}}, {{"Dense": {{"units": 3, "activation": "softmax"}}}}]}},
                 "compile": {{"loss": "sparse_categorical_crossentropy", "optimizer": "adam",
                             "metrics": ["accuracy"]}}}}, Path("t.yaml"))
model = build_model(cfg)
rng = np.random.default_rng(0)
x, y = rng.normal(size=(40, 6)), rng.integers(0, 3, 40)
out = {{}}
for dtype in ("float64", "float32"):
    world.allreduce_calls = world.allreduce_bytes = 0
    for step in range(2):  # 2 optimizer steps of 20 rows, as 4 micro-batches of 5
        data_parallel.optimizer_step(model, world, np.arange(20) + 20 * step,
                                     lambda r: ([x[r]], [y[r]], None), {micro},
                                     random_streams(model).values(), np.dtype(dtype))
    out[dtype] = [world.allreduce_calls, world.allreduce_bytes]
out["weights"] = sum(p.size for p in model.params())
if world.is_root:
    print("RESULT " + json.dumps(out))
"""


def test_one_allreduce_per_optimizer_step_of_the_chosen_dtype(tmp_path):
    (tmp_path / "step.py").write_text(textwrap.dedent(STEP.format(micro=5)))
    proc = subprocess.run([shutil.which("mpiexec"), "-n", "2", sys.executable, "step.py"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = [s for s in proc.stdout.splitlines() if s.startswith("RESULT ")][0]
    out = json.loads(line[len("RESULT "):])
    # per step: every gradient, the total loss, one per-output loss, accuracy's 2 sums
    values = out["weights"] + 1 + 1 + 2
    assert out["float64"] == [2, 2 * 8 * values]  # 2 steps, not 8 micro-batches
    assert out["float32"] == [2, 2 * 4 * values]
