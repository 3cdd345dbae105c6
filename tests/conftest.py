import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in a temporary folder so runs/ lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def write_config(folder, text, name="config.yaml"):
    path = Path(folder) / name
    path.write_text(text)
    return path


#: the base config of the sweep tests: a tiny iris model, a few seconds a trial
SWEEP_BASE = """\
name: tiny
data:
  train: {dataset: iris}
  validation: {dataset: iris, subset: test}
model:
  input_shape: [4]
  layers:
    - Dense: {units: 8, activation: relu}
    - Dense: {units: 3, activation: softmax}
compile:
  loss: sparse_categorical_crossentropy
  optimizer: {Adam: {lr: 0.01}}
  metrics: [accuracy]
fit: {epochs: 2, batch_size: 16}
"""


os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
# subprocesses (`python -m trainer`) import this checkout, not another installed copy
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
