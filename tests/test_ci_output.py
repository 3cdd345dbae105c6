"""What CI reads (issue 23): one JSON object per command, gate names checked before
training, GitHub annotations on the path as given, one sign for gate margins."""

import json

import pytest

from conftest import ROOT
from data_helpers import cli as invoke
from trainer.app import gates
from trainer.errors import GateError

QUICK = ROOT / "configs" / "quickstart.yaml"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run") / "r"
    r = invoke("fit", QUICK, "--set", "fit.epochs=1", "--set", "expect={}", "-q",
               "--run-dir", folder)
    assert r.exit_code == 0, r.output
    return folder


def one_object(stdout):
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, lines
    return json.loads(lines[0])


def test_evaluate_json_with_a_failing_gate_is_one_object(trained):
    r = invoke("evaluate", trained, "--json", "--expect", "accuracy>=0.9999")
    assert r.exit_code == 4
    out = one_object(r.stdout)
    assert set(out) == {"loss", "accuracy", "gates", "error", "exit_code"}
    assert out["exit_code"] == 4 and "accuracy >= 0.9999" in out["error"]
    (gate,) = out["gates"]
    assert gate["metric"] == "accuracy" and gate["passed"] is False and gate["margin"] < 0


def test_evaluate_json_with_passing_gates_holds_them(trained):
    r = invoke("evaluate", trained, "--json", "--expect", "accuracy>=0.1")
    assert r.exit_code == 0
    out = one_object(r.stdout)
    assert out["gates"][0]["passed"] is True and out["gates"][0]["margin"] > 0
    assert {"loss", "accuracy"} <= set(out)


def test_fit_json_with_a_failing_gate_is_one_object(workdir):
    r = invoke("fit", QUICK, "--set", "fit.epochs=1", "--json", "--run-dir", workdir / "g",
               "--expect", "loss<0.0001")
    assert r.exit_code == 4
    out = one_object(r.stdout)
    assert out["run_dir"] == str(workdir / "g") and out["exit_code"] == 4
    assert {g["metric"] for g in out["gates"]} == {"val_accuracy", "loss"}


def test_a_config_error_with_json_is_one_object(workdir):
    r = invoke("evaluate", QUICK, "--json", "--set", "fit.epochs=0")
    assert r.exit_code == 2
    assert one_object(r.stdout)["exit_code"] == 2


def test_fit_checks_gate_names_before_training(workdir):
    r = invoke("fit", QUICK, "-q", "--expect", "val_acc>=0.9", "--run-dir", workdir / "x")
    assert r.exit_code == 2
    assert "expect.val_acc: 'val_acc' is never logged. Did you mean 'val_accuracy'?" \
        in r.output and "(--expect val_acc>=0.9)" in r.output
    assert not (workdir / "x").exists()  # nothing trained
    r = invoke("fit", QUICK, "-q", "--set", 'expect={val_acc: ">= 0.9"}', "--run-dir",
               workdir / "x")
    assert r.exit_code == 2 and "Did you mean 'val_accuracy'?" in r.output


def test_validate_github_annotations_use_the_path_as_given(workdir):
    (workdir / "err").mkdir()
    (workdir / "err" / "typo.yaml").write_text(
        QUICK.read_text().replace("Dense: {units: 128", "Dens: {units: 128"))
    r = invoke("validate", "err/typo.yaml", "--format", "github")
    assert r.exit_code == 2
    assert r.output.startswith("::error file=err/typo.yaml,line=15,col=7::"), r.output
    report = json.loads(invoke("validate", "err/typo.yaml", "--json").stdout)
    assert report["problems"][0]["file"] == "err/typo.yaml"
    r = invoke("validate", "err/typo.yaml", "--format", "github", "--set", "fit.epochs=0")
    assert "::error file=err/typo.yaml::fit.epochs" in r.output
    r = invoke("validate", "err/typo.yaml", "--format", "github", "--set", "fit=[1")
    assert r.output.startswith("::error file=err/typo.yaml::"), r.output


def test_validate_json_of_several_configs_is_one_object(workdir):
    r = invoke("validate", QUICK, "missing.yaml", "--json")
    assert r.exit_code == 2
    out = one_object(r.stdout)
    assert out["valid"] is False
    assert [c["config"] for c in out["configs"]] == [str(QUICK), "missing.yaml"]
    assert [c["valid"] for c in out["configs"]] == [True, False]


@pytest.mark.parametrize("op, value, target, margin", [
    (">=", 0.95, 0.9, 0.05), (">=", 0.85, 0.9, -0.05), (">", 0.95, 0.9, 0.05),
    ("<=", 0.2, 0.3, 0.1), ("<=", 0.4, 0.3, -0.1), ("<", 0.2, 0.3, 0.1),
    ("==", 1.0, 1.0, 0.0), ("==", 0.9, 1.0, -0.1), ("!=", 0.9, 1.0, 0.1), ("!=", 1.0, 1.0, 0.0),
])
def test_gate_margin_is_positive_when_passed_for_every_operator(op, value, target, margin):
    expect = {"m": f"{op} {target}"}
    try:
        results = gates.check(expect, {"m": value})
    except GateError as exc:
        results = exc.results
    (r,) = results
    assert r["margin"] == pytest.approx(margin)
    assert r["passed"] == (margin > 0 or (op == "==" and margin == 0))


def test_sweep_json_with_a_failing_gate_is_one_object(workdir):
    (workdir / "base.yaml").write_text("""\
data:
  train: {dataset: iris}
  validation: {dataset: iris, subset: test}
model:
  input_shape: [4]
  layers: [{Dense: {units: 3, activation: softmax}}]
compile: {loss: sparse_categorical_crossentropy, metrics: [accuracy]}
""")
    (workdir / "sweep.yaml").write_text("""\
name: s
base: base.yaml
search: {grid: {fit.batch_size: [16]}}
metric: val_accuracy
mode: max
expect: {val_accuracy: '>= 1.5'}
""")
    r = invoke("sweep", workdir / "sweep.yaml", "--json", "--runs-root", workdir / "runs")
    assert r.exit_code == 4
    out = one_object(r.stdout)
    assert out["exit_code"] == 4 and out["counts"] == {"completed": 1}
    assert out["gates"][0]["metric"] == "val_accuracy" and out["gates"][0]["margin"] < 0
