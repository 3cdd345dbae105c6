"""`trainer predict --top K` (Keras's decode_predictions for 1000-class outputs, with
the class index fetched into Keras's cache from a local mirror)."""

import dataclasses
import json

import numpy as np
from click.testing import CliRunner

from conftest import write_config
from fetch_helpers import Files, serve, sha256
from trainer.applications import decode
from trainer.cli import main

CONFIG = """
data:
  train: {{dataset: iris, subset: train}}
model:
  input_shape: [4]
  layers:
    - Dense: {{units: {units}, activation: softmax}}
compile: {{loss: sparse_categorical_crossentropy, optimizer: adam}}
fit: {{epochs: 1, batch_size: 32}}
"""


def _run(workdir, units):
    path = write_config(workdir, CONFIG.format(units=units))
    r = CliRunner().invoke(main, ["fit", str(path), "--run-dir", str(workdir / "run")])
    assert r.exit_code == 0, r.output
    np.save(workdir / "x.npy", np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32))
    return workdir / "run"


def test_top_k_class_ids(workdir):
    run = _run(workdir, 3)
    r = CliRunner().invoke(main, ["predict", str(run), "--input", str(workdir / "x.npy"),
                                  "--top", "2"])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip().startswith(("1.", "2."))]
    assert len(lines) == 4 and all("class" in ln for ln in lines)


def test_top_5_imagenet_names(workdir, monkeypatch):
    index = {str(i): [f"n{i:08d}", f"label_{i}"] for i in range(1000)}
    blob = json.dumps(index).encode()
    monkeypatch.setattr(decode, "CLASS_INDEX",
                        dataclasses.replace(decode.CLASS_INDEX, file_hash=sha256(blob)))
    monkeypatch.setenv("KERAS_HOME", str(workdir / "kh"))
    run = _run(workdir, 1000)
    files = Files({"/download.tensorflow.org/data/imagenet_class_index.json": blob})
    with serve(files) as base:
        monkeypatch.setenv("TRAINER_MIRROR", base)
        r = CliRunner().invoke(main, ["predict", str(run), "--input", str(workdir / "x.npy"),
                                      "--top", "5"])
    assert r.exit_code == 0, r.output
    assert (workdir / "kh" / "models" / "imagenet_class_index.json").exists()
    ranked = [ln.split() for ln in r.output.splitlines() if ln.startswith("  ")]
    assert len(ranked) == 10
    first = ranked[0]
    assert first[0] == "1." and first[1].startswith("n") and first[2].startswith("label_")
    probs = [float(x[3]) for x in ranked[:5]]
    assert probs == sorted(probs, reverse=True)


def test_decode_predictions_matches_keras_order():
    preds = np.zeros((1, 1000))
    preds[0, [7, 3, 999]] = [0.2, 0.5, 0.3]
    assert [c for c, _ in decode.top_classes(preds, 3)[0]] == [3, 999, 7]
