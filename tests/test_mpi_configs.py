"""The example configs (issue 27: "on every example config that fits in the time")
train alike on one process and on `mpiexec -n 2`: one epoch in float64, the final
weights within a relative 1e-5 and every logged loss within 1e-6.

The configs on Keras's downloadable datasets and pretrained weights (mnist_cnn,
cifar10_cnn, finetune_*) need fabricated files, and cifar_cnn's float64 convolutions
take a minute: they are left to tests/test_configs.py (one process); the rest run here."""

from pathlib import Path

import pytest

pytest.importorskip("mpi4py")
from test_mpi import MPIEXEC, history, max_relative, trainer, weights  # noqa: E402

pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec on PATH")

ROOT = Path(__file__).resolve().parent.parent
SKIP = {"mnist_cnn.yaml", "cifar10_cnn.yaml", "finetune_images.yaml",
        "finetune_mobilenet.yaml", "keras3_finetune.yaml", "cifar_cnn.yaml"}
CONFIGS = [p for p in sorted((ROOT / "configs").glob("*.yaml")) if p.name not in SKIP]
#: at most this many steps of an epoch (a few configs have large training sets)
STEPS = 4


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_an_example_config_trains_alike_on_two_ranks(path, tmp_path):
    args = ["fit", path, "--set", "fit.epochs=1", "--set", "dtype=float64",
            "--set", f"fit.steps_per_epoch={STEPS}", "--set", "expect={}", "-q"]
    one = trainer(tmp_path, *args, "--run-dir", "one")
    assert one.returncode == 0, one.stderr
    two = trainer(tmp_path, *args, "--run-dir", "two", ranks=2)
    assert two.returncode == 0, two.stderr
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert a and set(a) == set(b)
    assert max_relative(a, b) <= 1e-5
    rows_one, rows_two = history(tmp_path / "one"), history(tmp_path / "two")
    assert len(rows_one) == len(rows_two) == 1
    losses = [k for k in rows_one[0] if k.endswith("loss")]
    assert losses
    for key in losses:
        assert float(rows_two[0][key]) == pytest.approx(float(rows_one[0][key]), rel=1e-6), key
