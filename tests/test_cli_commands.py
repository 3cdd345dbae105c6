"""validate, predict, plot, expect gates, --json, --log-format jsonl, exit codes."""

import json
import struct

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT, write_config
from trainer.cli import main

QUICK = ROOT / "configs" / "quickstart.yaml"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run") / "r"
    r = invoke("fit", QUICK, "--set", "fit.epochs=3", "--set", "expect={}", "-q",
               "--run-dir", folder)
    assert r.exit_code == 0, r.output
    return folder


# -- validate -----------------------------------------------------------------

def test_validate_ok_and_json():
    r = invoke("validate", QUICK)
    assert r.exit_code == 0 and "valid" in r.output
    r = invoke("validate", QUICK, "--json")
    assert json.loads(r.stdout) == {"config": str(QUICK), "valid": True, "problems": []}


LINTY = """\
data:
  train: {dataset: digits}
  validation: {split: 0.2}
model:
  input_shape: [8, 8]
  layers:
    - Flatten
    - Dense: {units: 10, activation: softmax}
compile:
  loss: binary_crossentropy
  metrics: [accuracy]
callbacks:
  - EarlyStopping: {monitor: val_acc}
expect:
  test_accuracy: ">= 0.5"
"""


def test_validate_reports_every_problem_with_lines(workdir):
    path = write_config(workdir, LINTY)
    r = invoke("validate", path)
    assert r.exit_code == 2
    assert "warning: compile.loss: output 'dense' ends in softmax over 10 units but the " \
           "loss is binary_crossentropy" in r.output and "config.yaml:10:9" in r.output
    assert "error: callbacks[0].EarlyStopping.monitor: 'val_acc' is never logged. Did you " \
           "mean 'val_accuracy'?" in r.output
    assert "error: expect.test_accuracy: 'test_accuracy' is never logged" in r.output
    r = invoke("validate", path, "--format", "github")
    lines = r.output.strip().splitlines()
    assert any(line.startswith(f"::error file={path},line=13,col=5::callbacks[0]")
               for line in lines), lines  # the path as given (see tests/test_ci_output.py)
    assert any(line.startswith(f"::warning file={path},line=10,col=9::") for line in lines)
    report = json.loads(invoke("validate", path, "--json").stdout)
    assert report["valid"] is False and len(report["problems"]) == 3


def test_validate_categorical_loss_needs_one_hot(workdir):
    text = QUICK.read_text().replace("    y: [{to_categorical: {num_classes: 10}}]\n", "")
    r = invoke("validate", write_config(workdir, text))
    assert r.exit_code == 2 and "needs one-hot labels; add `to_categorical`" in r.output


def test_validate_schema_and_build_errors(workdir):
    r = invoke("validate", write_config(workdir, QUICK.read_text().replace(
        "Flatten", "Flaten")))
    assert r.exit_code == 2 and "Did you mean 'Flatten'?" in r.output
    r = invoke("validate", write_config(workdir, QUICK.read_text().replace(
        "input_shape: [8, 8]", "input_shape: [null, 8]")))
    assert r.exit_code == 2 and "needs a fully known input shape" in r.output


# -- predict ------------------------------------------------------------------

def test_predict_npy_and_csv(trained, workdir):
    from trainer.config.families import datasets
    x, _ = datasets.get({"digits": "test"}).load()
    np.save(workdir / "in.npy", x[:7])
    r = invoke("predict", trained, "--input", workdir / "in.npy", "--output", workdir / "p.npy")
    assert r.exit_code == 0, r.output
    p = np.load(workdir / "p.npy")
    assert p.shape == (7, 10) and np.allclose(p.sum(axis=1), 1, atol=1e-5)
    r = invoke("predict", trained, "--input", workdir / "in.npy", "--output",
               workdir / "p.csv", "--batch-size", "3")
    assert r.exit_code == 0
    rows = (workdir / "p.csv").read_text().strip().splitlines()
    assert rows[0].startswith("dense_1_0,") and len(rows) == 8
    np.testing.assert_allclose(np.loadtxt(workdir / "p.csv", delimiter=",", skiprows=1), p,
                               rtol=1e-5, atol=1e-7)


def test_predict_bad_input(trained, workdir):
    np.save(workdir / "bad.npy", np.zeros((3, 5)))
    r = invoke("predict", trained, "--input", workdir / "bad.npy")
    assert r.exit_code == 3 and "(5,)" in r.output and "(8, 8)" in r.output
    r = invoke("predict", trained, "--input", workdir / "nothing.npy")
    assert r.exit_code == 3


# -- gates, json, events --------------------------------------------------------

def test_gate_not_met_exits_4_with_margin(workdir):
    r = invoke("fit", QUICK, "--set", "fit.epochs=1", "-q", "--run-dir", workdir / "g",
               "--expect", "loss<0.001")
    assert r.exit_code == 4
    assert "expect gate not met" in r.output and "loss < 0.001: got" in r.output \
        and "off by" in r.output
    report = json.loads((workdir / "g" / "metrics.json").read_text())
    assert report["passed"] is False
    assert {g["metric"] for g in report["gates"]} == {"val_accuracy", "loss"}


def test_fit_json_is_one_object(workdir):
    r = invoke("fit", QUICK, "--set", "fit.epochs=1", "--set", "expect={}", "--json",
               "--run-dir", workdir / "j")
    assert r.exit_code == 0
    out = json.loads(r.stdout)
    assert out["run_dir"] == str(workdir / "j") and "val_accuracy" in out["metrics"]


def test_evaluate_data_picks_a_split_or_reads_a_file(trained, tmp_path):
    def measured(*args):
        r = invoke("evaluate", trained, "--json", *args)
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    default, test = measured(), measured("--data", "test")
    assert default == test
    train = measured("--data", "train")
    assert train != test and set(train) == {"loss", "accuracy"}
    # the training rows written to a file: read like data.test (raw pixels, preprocessed
    # with the run's steps), the same numbers as the train split
    from trainer.config.families import datasets
    x, y = datasets.get({"digits": {"subset": "train"}}).load()
    np.savez(tmp_path / "rows.npz", x=x, y=y)
    assert measured("--data", str(tmp_path / "rows.npz")) == pytest.approx(train, rel=1e-6)
    # validation is the test subset in the quickstart
    assert measured("--data", "validation") == pytest.approx(test, rel=1e-6)
    r = invoke("evaluate", trained, "--data", "holdout")
    assert r.exit_code == 2 and "neither a split" in r.output
    np.savez(tmp_path / "bad.npz", inputs=x)
    r = invoke("evaluate", trained, "--data", str(tmp_path / "bad.npz"))
    assert r.exit_code in (2, 3) and "Traceback" not in r.output and "'x'" in r.output, \
        r.output


def test_evaluate_gates(trained):
    assert invoke("evaluate", trained, "--expect", "accuracy>=0.5").exit_code == 0
    r = invoke("evaluate", trained, "--expect", "accuracy>=0.9999")
    assert r.exit_code == 4 and "accuracy >= 0.9999" in r.output


def test_jsonl_events(workdir):
    r = invoke("fit", QUICK, "--set", "fit.epochs=2", "--set", "expect={}", "--log-format",
               "jsonl", "--run-dir", workdir / "e")
    assert r.exit_code == 0
    events = [json.loads(line) for line in r.stdout.strip().splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "run_started" and names[-1] == "run_finished"
    assert names.count("epoch_end") == 2
    assert "val_accuracy" in events[names.index("epoch_end")]["logs"]


def test_jsonl_error_event_has_code(workdir):
    r = invoke("fit", QUICK, "--set", "fit.epochs=1", "--log-format", "jsonl",
               "--run-dir", workdir / "e", "--expect", "loss<0")
    assert r.exit_code == 4
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert last["event"] == "error" and last["exit_code"] == 4


# -- plot ---------------------------------------------------------------------

def test_plot_writes_a_png(trained, workdir):
    pytest.importorskip("matplotlib")
    r = invoke("plot", trained, trained, "-o", workdir / "c.png")
    assert r.exit_code == 0, r.output
    data = (workdir / "c.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert 400 <= width <= 3000 and 200 <= height <= 1500


def test_terminal_chart_after_fit(workdir):
    r = invoke("fit", QUICK, "--set", "fit.epochs=3", "--set", "expect={}", "--run-dir",
               workdir / "t")
    assert "loss per epoch" in r.output and "│" in r.output


# -- every exit code ----------------------------------------------------------

def test_exit_1_internal_error_has_no_traceback(workdir, monkeypatch):
    import trainer.app.fit
    monkeypatch.setattr(trainer.app.fit, "fit", lambda *a, **k: 1 / 0)
    r = invoke("fit", QUICK)
    assert r.exit_code == 1 and "internal error: ZeroDivisionError" in r.output
    assert "Traceback" not in r.output


def test_exit_5_diverged_keeps_checkpoint(workdir):
    text = QUICK.read_text().replace("{Adam: {lr: 0.003}}", "{SGD: {lr: 1.0e+12}}").replace(
        "activation: softmax", "activation: linear").replace("loss: categorical_crossentropy",
                                                              "loss: mse")
    r = invoke("fit", write_config(workdir, text), "--set", "fit.epochs=2", "--run-dir",
               workdir / "d")
    assert r.exit_code == 5 and "loss became" in r.output
    meta = json.loads((workdir / "d" / "run.json").read_text())
    assert meta["status"] == "diverged"


def test_exit_130_interrupt_writes_checkpoint(workdir, monkeypatch):
    from trainer.training import loop as training

    calls = {"n": 0}
    original = training.Loop.epoch_batches

    def interrupt(self, epoch):
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(training.Loop, "epoch_batches", interrupt)
    r = invoke("fit", QUICK, "--run-dir", workdir / "i")
    assert r.exit_code == 130 and "resumable checkpoint" in r.output
    assert (workdir / "i" / "checkpoints" / "last.h5").exists()


def test_a_diverging_run_prints_only_its_error(workdir):
    """NumPy's overflow warnings on the way to the NaN loss used to print before the
    error, pointing into trainer's code (seen by the fuzzer); a real process prints
    the one error line, and --debug shows the warnings again."""
    import subprocess
    import sys

    text = QUICK.read_text().replace("{Adam: {lr: 0.003}}", "{SGD: {lr: 1.0e+30}}").replace(
        "activation: softmax", "activation: linear").replace("loss: categorical_crossentropy",
                                                              "loss: mse")
    path = write_config(workdir, text)
    for debug in ([], ["--debug"]):
        r = subprocess.run([sys.executable, "-m", "trainer", *debug, "fit", str(path),
                            "--set", "fit.epochs=2", "--run-dir", str(workdir / f"d{len(debug)}"),
                            "-q"], capture_output=True, text=True, timeout=120)
        if debug:  # warnings and the traceback
            assert "RuntimeWarning" in r.stderr and "DivergedError" in r.stderr
        else:
            assert r.returncode == 5, r.stderr
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: the loss became"), lines
