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


os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
# subprocesses (`python -m trainer`) import this checkout, not another installed copy
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
