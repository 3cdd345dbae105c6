"""Hostile input that ended as an internal error (exit 1), or as output strict readers
reject, and now ends in one message with the documented exit code (issue 22)."""

import json
import sys

import h5py
import pytest

from conftest import write_config
from data_helpers import IRIS, cli
from trainer.store import checkpoint


# -- file name templates ----------------------------------------------------------------

@pytest.mark.parametrize("template, field", [
    ("w{epoch:zz}.h5", "{epoch:zz}"),
    ("w{lr:s}.h5", "{lr:s}"),
    ("w{epoch:>99999999999}.h5", "{epoch:>99999999999}"),
    ("w{epoch:0300d}.h5", "{epoch:0300d}"),
    ("w{loss:.99999999999f}.h5", "{loss:.99999999999f}"),
    ("w{epoch:/>4}.h5", "{epoch:/>4}"),
    ("w{val_loss:,d}.h5", "{val_loss:,d}"),
])
def test_a_bad_template_is_a_config_error_before_training(tmp_path, template, field):
    """Before: exit 1 after epoch 1, or "out of memory ... lower fit.batch_size"."""
    text = IRIS + f"callbacks:\n  - ModelCheckpoint: {{filepath: '{template}'}}\n"
    r = cli("fit", write_config(tmp_path, text), "--run-dir", tmp_path / "r")
    assert r.exit_code == 2, r.output
    assert f"ModelCheckpoint.filepath: {field}" in r.output, r.output
    assert "config.yaml:9:" in r.output, r.output
    assert not (tmp_path / "r" / "checkpoints" / "last.h5").exists()  # no epoch ran


def test_good_templates_still_save_every_epoch(tmp_path):
    text = IRIS.replace("epochs: 1", "epochs: 2") + \
        "callbacks:\n  - ModelCheckpoint: {filepath: 'w{epoch:02d}-{val_loss:.3f}-{lr:g}.h5'}\n"
    r = cli("fit", write_config(tmp_path, text), "--run-dir", tmp_path / "r")
    assert r.exit_code == 0, r.output
    saved = sorted(p.name[:4] for p in (tmp_path / "r" / "checkpoints").glob("w*.h5"))
    assert saved == ["w01-", "w02-"]


# -- NUL bytes, a run.json that is not an object --------------------------------------------

@pytest.mark.parametrize("change, where", [
    (lambda t: t.replace("seed: 0", "seed: 0\0"), "config.yaml:1:8"),
    (lambda t: t.replace("fit:", "\0fit:"), "config.yaml:7:1"),
    (lambda t: t.replace("{dataset: iris}", '{path: "d\\0.csv", y: y}'), "config.yaml:3:17"),
    (lambda t: t + 'callbacks: [{CSVLogger: {filename: "log\\0.csv"}}]\n', "config.yaml:8:"),
])
def test_a_nul_byte_in_a_config_is_a_config_error(tmp_path, change, where):
    """Before: exit 1 (PyYAML's ReaderError, or "embedded null byte" from the OS)."""
    path = write_config(tmp_path, change(IRIS))
    for command in (["validate", path], ["fit", path, "--run-dir", tmp_path / "r"]):
        r = cli(*command)
        assert r.exit_code == 2, r.output
        assert "NUL" in r.output and where in r.output, r.output
        assert "internal error" not in r.output


@pytest.mark.parametrize("text", ["[1, 2]", "\"completed\"", "null", "{\"status\": "])
def test_a_run_json_that_is_not_an_object_is_a_damaged_run_folder(tmp_path, text):
    r = cli("fit", write_config(tmp_path, IRIS), "--run-dir", tmp_path / "r")
    assert r.exit_code == 0, r.output
    (tmp_path / "r" / "run.json").write_text(text)
    for command in (["fit", "--resume", tmp_path / "r", "--set", "fit.epochs=2"],
                    ["evaluate", tmp_path / "r"]):
        r = cli(*command)
        assert r.exit_code == 3, r.output
        assert "run.json" in r.output and "damaged" in r.output, r.output


# -- strict JSON -----------------------------------------------------------------------------

def refuse(constant):
    raise ValueError(f"not JSON: {constant}")


def test_evaluate_json_of_a_diverged_model_is_strict_json(tmp_path):
    """Before: `"loss": Infinity`, which strict parsers reject."""
    text = IRIS.replace("units: 3, activation: softmax", "units: 1") \
        .replace("sparse_categorical_crossentropy", "mse")
    r = cli("fit", write_config(tmp_path, text), "--run-dir", tmp_path / "r")
    assert r.exit_code == 0, r.output
    final = tmp_path / "r" / "checkpoints" / "final.h5"  # the model evaluate uses
    with h5py.File(final, "r+") as f:
        f["dense/dense/kernel:0"][...] = 1e30  # outputs ~1e31: the squared error overflows
    checkpoint._seal(final)
    r = cli("evaluate", tmp_path / "r", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1], parse_constant=refuse)
    assert out["loss"] is None
    assert "loss is Infinity" in out["note"] and "written as null" in out["note"]
    assert "note: loss is Infinity" in r.stderr


def test_the_strict_writer_nulls_every_non_finite_value_and_says_where():
    import numpy as np

    from trainer.strict_json import report

    value = {"ranking": [{"val_loss_mean": float("nan")}, {"val_loss_mean": 0.5}],
             "metrics": {"loss": np.float32("inf"), "acc": np.float64(0.75)},
             "curve": np.array([1.0, -np.inf])}
    text, why = report(value)
    out = json.loads(text, parse_constant=refuse)
    assert out["ranking"][0]["val_loss_mean"] is None and out["ranking"][1]["val_loss_mean"] == 0.5
    assert out["metrics"] == {"loss": None, "acc": 0.75} and out["curve"] == [1.0, None]
    assert why == out["note"]
    for part in ("ranking[0].val_loss_mean is NaN", "metrics.loss is Infinity",
                 "curve[1] is -Infinity"):
        assert part in why
    assert report({"loss": 0.25}) == ('{"loss": 0.25}', None)


def test_every_json_the_cli_prints_goes_through_one_strict_writer():
    """The commands print JSON only through cli.base.echo_json (trainer.strict_json)."""
    from pathlib import Path

    import trainer.cli as cli_package

    sources = {p.stem: p.read_text() for p in Path(cli_package.__file__).parent.glob("*.py")}
    everything = "".join(sources.values())
    assert everything.count("json.dumps(") == 2  # the sweep schema; sweep's str() round trip
    assert "click.echo(json.dumps(sweep_schema()" in sources["schema"]
    for command in ("fit", "evaluate", "validate", "sweep"):
        assert "echo_json(" in sources[command], command
    assert "echo_json({**json_result()" in sources["base"]  # errors, inside the object


# -- validate and user modules ----------------------------------------------------------------

def test_validate_checks_a_user_module_path_before_importing_anything(tmp_path, monkeypatch):
    """Before: `pkg.missing:Hook` ran pkg/__init__.py, then failed."""
    marker = tmp_path / "ran"
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.delitem(sys.modules, "pkg", raising=False)
    text = IRIS + "callbacks: [{callback: 'pkg.missing:Hook'}]\n"
    r = cli("validate", write_config(tmp_path, text))
    assert r.exit_code == 2, r.output
    assert "no pkg/missing.py" in r.output and "nothing was imported" in r.output, r.output
    assert "config.yaml:8:" in r.output
    assert not marker.exists()
    assert "pkg" not in sys.modules


@pytest.mark.parametrize("ref", ["pkg:Hook.inner", "pkg:1Hook", "pkg..sub:Hook", "pkg.:Hook"])
def test_a_reference_with_bad_syntax_imports_nothing(tmp_path, monkeypatch, ref):
    from trainer.callbacks.base import Callback
    from trainer.errors import ConfigError
    from trainer.config.usercode import load_class

    marker = tmp_path / "ran"
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.delitem(sys.modules, "pkg", raising=False)
    with pytest.raises(ConfigError, match="with plain names.*nothing was imported"):
        load_class(ref, Callback, tmp_path, "callback")
    assert not marker.exists()
