"""Every example in configs/ runs as written (with epochs cut down), so the docs never lie.

The configs on Keras's datasets (mnist_cnn, cifar10_cnn, finetune_mobilenet) run on
small fabricated files of the real formats placed in a temporary KERAS_HOME (a
MobileNet weight file of random values in Keras's release layout too): this machine
has no network."""

import keras_fakes
import pytest
from click.testing import CliRunner

from conftest import ROOT
from trainer.cli import main

CONFIGS = sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "configs").glob("*.json"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_runs(path, workdir, monkeypatch):
    keras_fakes.place(monkeypatch, workdir / "keras_home", ["mnist", "cifar10"])
    if "application: MobileNet" in path.read_text():
        keras_fakes.place_weights(workdir / "keras_home", "MobileNet", alpha=0.25,
                                  include_top=False, input_shape=[32, 32, 3])
    r = CliRunner().invoke(main, ["fit", str(path), "--set", "fit.epochs=1",
                                  "--run-dir", str(workdir / "run")])
    assert r.exit_code in (0, 4), r.output  # 4: an expect gate not met after one epoch
    assert (workdir / "run" / "checkpoints" / "last.h5").exists()
