import csv
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT, write_config
from trainer.cli import main

QUICK = ROOT / "configs" / "quickstart.yaml"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_fit_then_evaluate_json(workdir):
    r = run("fit", QUICK, "--set", "fit.epochs=2", "--set", "expect={}", "--run-dir",
            workdir / "r")
    assert r.exit_code == 0, r.output
    folder = workdir / "r"
    for f in ("config.yaml", "history.csv", "run.json", "checkpoints/last.h5"):
        assert (folder / f).exists(), f
    rows = list(csv.DictReader(open(folder / "history.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr"} <= set(rows[0])
    meta = json.loads((folder / "run.json").read_text())
    assert meta["status"] == "completed" and meta["seed"] == 0
    assert meta["final_metrics"]["val_accuracy"] == pytest.approx(float(rows[-1]["val_accuracy"]))
    r = run("evaluate", folder, "--json")
    assert r.exit_code == 0
    result = json.loads(r.stdout)
    assert set(result) == {"loss", "accuracy"} and 0 <= result["accuracy"] <= 1
    # evaluating the test split reproduces what fit logged as val (same data here)
    assert result["accuracy"] == pytest.approx(float(rows[-1]["val_accuracy"]))


def test_checkpoint_has_keras_layout(workdir):
    run("fit", QUICK, "--set", "fit.epochs=1", "--run-dir", workdir / "r")
    with h5py.File(workdir / "r/checkpoints/last.h5") as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        assert names == ["flatten", "dense", "dropout", "dense_1"]
        wn = [n.decode() for n in f["dense"].attrs["weight_names"]]
        assert wn == ["dense/kernel:0", "dense/bias:0"]
        assert f["dense"]["dense/kernel:0"].shape == (64, 128)
        assert "optimizer_weights" in f and "trainer_state" in f


def test_misspelt_layer_exits_2_with_line_and_suggestion(workdir):
    text = QUICK.read_text().replace("- Dense: {units: 128", "- Dens: {units: 128")
    path = write_config(workdir, text)
    r = CliRunner().invoke(main, ["fit", str(path)])
    assert r.exit_code == 2
    assert "unknown layer 'Dens'. Did you mean 'Dense'?" in r.output
    assert "config.yaml:15:7" in r.output
    assert "Traceback" not in r.output


def test_shape_error_is_config_error_before_data(workdir):
    text = QUICK.read_text().replace("input_shape: [8, 8]", "input_shape: [null, 8]")
    path = write_config(workdir, text.replace("dataset: digits, subset: train",
                                              "path: missing.npz, x: x, y: y"))
    for command in ("validate", "fit"):
        r = CliRunner().invoke(main, [command, str(path)])
        assert r.exit_code == 2, r.output
        assert "model.layers[0]: layer 'flatten' (Flatten): needs a fully known input " \
               "shape, got (None, 8) (config.yaml:14:7)" in r.output
    path.write_text(QUICK.read_text().replace("dataset: digits, subset: train",
                                              "path: missing.npz, x: x, y: y"))
    r = CliRunner().invoke(main, ["fit", str(path)])
    assert r.exit_code == 3 and "missing.npz" in r.output


def test_label_shape_error_names_both_shapes(workdir):
    text = QUICK.read_text().replace("    y: [{to_categorical: {num_classes: 10}}]\n", "")
    r = CliRunner().invoke(main, ["fit", str(write_config(workdir, text))])
    assert r.exit_code == 3
    assert "(None, 10)" in r.output and "(1438,)" in r.output and "to_categorical" in r.output


def test_summary_and_schema(workdir):
    r = run("summary", QUICK)
    assert "dense_1 (Dense)" in r.output and "Total params: 9,610" in r.output
    r = run("schema")
    assert json.loads(r.output)["$schema"].endswith("2020-12/schema")


def test_missing_config_exits_2(workdir):
    r = CliRunner().invoke(main, ["fit", "nope.yaml"])
    assert r.exit_code == 2 and "not found" in r.output


def test_real_subprocess_help_and_fit(workdir):
    out = subprocess.run([sys.executable, "-m", "trainer", "--help"], capture_output=True,
                         text=True, check=True)
    assert "fit" in out.stdout and "Examples" in out.stdout
    out = subprocess.run([sys.executable, "-m", "trainer", "fit", str(QUICK), "--set",
                          "fit.epochs=1", "--set", "expect={}", "--json", "--run-dir",
                          str(workdir / "s")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["metrics"]["loss"] > 0


def test_same_seed_same_history(workdir):
    for d in ("a", "b"):
        run("fit", QUICK, "--set", "fit.epochs=2", "--run-dir", workdir / d)
    a = (workdir / "a/history.csv").read_text()
    assert a == (workdir / "b/history.csv").read_text()
    with h5py.File(workdir / "a/checkpoints/last.h5") as fa, \
            h5py.File(workdir / "b/checkpoints/last.h5") as fb:
        np.testing.assert_array_equal(fa["dense/dense/kernel:0"][()],
                                      fb["dense/dense/kernel:0"][()])


def test_evaluate_finds_relative_data_of_the_original_config(workdir):
    from trainer.config.families import datasets
    x, y = datasets.get("digits").load()
    (workdir / "cfg" / "data").mkdir(parents=True)
    np.savez(workdir / "cfg" / "data" / "d.npz", x=x, y=y)
    text = QUICK.read_text().replace("dataset: digits, subset: train",
                                     "path: data/d.npz, x: x, y: y").replace(
        "test: {dataset: digits, subset: test}", "test: {path: data/d.npz, x: x, y: y}")
    path = write_config(workdir / "cfg", text)
    assert run("fit", path, "--set", "fit.epochs=1", "--set", "expect={}", "-q",
               "--run-dir", workdir / "r").exit_code == 0
    r = run("evaluate", workdir / "r", "--json")
    assert r.exit_code == 0, r.output
    assert 0 <= json.loads(r.stdout)["accuracy"] <= 1
