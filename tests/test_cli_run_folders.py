"""Commands that take a config take a run folder too; `trainer schema NAME` prints one
component readably; `--checkpoint NAME` is looked for in the run before the current
folder."""

import json
import shutil

import pytest
from click.testing import CliRunner

from conftest import ROOT
from trainer.cli import main

QUICK = ROOT / "configs" / "quickstart.yaml"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "run"
    r = CliRunner().invoke(main, ["fit", str(QUICK), "--run-dir", str(folder), "-q",
                                  "--set", "fit.epochs=2", "--set", "expect={}"])
    assert r.exit_code == 0, r.output
    shutil.copy(folder / "checkpoints" / "last.h5", folder / "checkpoints" / "best.h5")
    return folder


def test_summary_and_validate_take_a_run_folder(run):
    r = CliRunner().invoke(main, ["summary", str(run)])
    assert r.exit_code == 0, r.output
    assert "dense" in r.output and "1,290" in r.output  # the Keras-style table
    r = CliRunner().invoke(main, ["validate", str(run), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["valid"] is True


def test_fit_takes_a_run_folder_as_its_config(run, tmp_path):
    r = CliRunner().invoke(main, ["fit", str(run), "--run-dir", str(tmp_path / "again"),
                                  "-q", "--set", "fit.epochs=1"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "again" / "checkpoints" / "last.h5").is_file()


def test_a_folder_that_is_not_a_run_is_named(tmp_path):
    r = CliRunner().invoke(main, ["summary", str(tmp_path)])
    assert r.exit_code == 2
    assert "is not a run folder (no config.yaml)" in r.output


def test_checkpoint_name_is_found_in_the_run_before_the_current_folder(run, workdir):
    (workdir / "best.h5").write_bytes(b"not a checkpoint")  # would fail if read
    r = CliRunner().invoke(main, ["evaluate", str(run), "--checkpoint", "best.h5", "--json"])
    assert r.exit_code == 0, r.output
    assert "accuracy" in json.loads(r.output)
    r = CliRunner().invoke(main, ["export", str(run), str(workdir / "m.json"),
                                  "--checkpoint", "last.prev.h5"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["evaluate", str(run), "--checkpoint", "nope.h5"])
    assert r.exit_code == 3
    assert "checkpoint not found: nope.h5 (looked in" in r.output
    assert "checkpoints/, " in r.output and "the current folder" in r.output


def test_schema_of_one_component_is_readable():
    r = CliRunner().invoke(main, ["schema", "LSTM"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "LSTM (layer)"
    row = next(line for line in lines if line.strip().startswith("recurrent_activation"))
    assert row.split() == ["recurrent_activation", "activation", "default:", '"hard_sigmoid"']
    assert next(line for line in lines if line.strip().startswith("units ")).split() == [
        "units", "integer", "≥", "1", "required"]
    assert "number in [0, 1]" in r.output  # dropout
    r = CliRunner().invoke(main, ["schema", "adam"])
    assert r.exit_code == 0 and r.output.startswith("Adam (optimizer; also adam)")
    r = CliRunner().invoke(main, ["schema", "LTSM"])
    assert r.exit_code == 2 and "Did you mean 'LSTM'?" in r.output
    whole = CliRunner().invoke(main, ["schema"])
    assert json.loads(whole.output)["$schema"]  # no NAME: the JSON Schema as before
