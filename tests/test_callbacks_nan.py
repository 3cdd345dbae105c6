import json

import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from cbhelp import BASE
from conftest import write_config
from trainer.cli import main


def diverging_config(folder, callbacks):
    """Fine at epoch 0; an absurd lr from epoch 1 blows the mse loss up to Inf/NaN."""
    value = dict(BASE, callbacks=[
        {"LearningRateScheduler": {"schedule": {"table": {0: 0.01, 1: 1e15}}}}, *callbacks])
    value["model"] = {"input_shape": [4], "layers": [{"Dense": {"units": 3}}]}
    value["compile"] = dict(BASE["compile"], loss="mse")
    return write_config(folder, yaml.safe_dump(value))


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("callbacks", [[], ["TerminateOnNaN"]])
def test_divergence_exits_5_keeping_the_last_good_checkpoint(workdir, callbacks):
    path = diverging_config(workdir, callbacks)
    r = CliRunner().invoke(main, ["fit", str(path), "--run-dir", "r", "--set", "fit.epochs=3"])
    assert r.exit_code == 5, r.output
    assert "the loss became" in r.output and "epoch 2" in r.output
    assert "the last good checkpoint (after epoch 1) is kept" in r.output
    if callbacks:
        assert "Invalid loss, terminating training" in r.output
    meta = json.loads((workdir / "r" / "run.json").read_text())
    assert meta["status"] == "diverged"
    with h5py.File(workdir / "r" / "checkpoints" / "last.h5") as f:
        assert json.loads(f["trainer_state"].attrs["state"])["loop"]["epoch"] == 1
        assert np.isfinite(f["dense"]["dense/kernel:0"][()]).all()
    assert (workdir / "r" / "history.csv").read_text().count("\n") == 2
