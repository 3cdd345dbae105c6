"""LambdaCallback: Keras's callback of functions, each named module:function and
imported like user callbacks; Keras's arguments; a `model` parameter to stop training."""

import json
import textwrap

import pytest
from click.testing import CliRunner

from cbhelp import fit
from conftest import ROOT, write_config
from trainer.cli import main
from trainer.errors import ConfigError

HOOKS = '''
import json

calls = []


def show(batch, logs):
    print(f"batch {batch} size {logs['size']}")


def plot_loss(epoch, logs):
    print(f"epoch {epoch} loss {logs['loss']:.4f} val_loss {logs['val_loss']:.4f}")
    logs["loss"] = -1.0  # a copy: the history keeps the real value


def record(epoch, logs):
    with open("epochs.jsonl", "a") as f:
        f.write(json.dumps({"epoch": epoch, "keys": sorted(logs)}) + "\\n")


def begin(logs):
    print("train begins", sorted(logs or {}))


def end(logs):
    print("train ends")


def stop_after_two(epoch, logs, model):
    if epoch == 1:
        model.stop_training = True  # as Keras code does through its closure


def wrong(epoch):
    pass


def fails(epoch, logs):
    raise RuntimeError("boom")
'''


def hooks(folder, source=HOOKS):
    (folder / "my_hooks.py").write_text(textwrap.dedent(source))


def test_functions_print_write_a_file_and_keep_the_history(tmp_path, capsys, monkeypatch):
    hooks(tmp_path)
    monkeypatch.chdir(tmp_path)
    run, _ = fit(tmp_path, [{"LambdaCallback": {
        "on_epoch_end": "my_hooks:plot_loss", "on_batch_begin": "my_hooks:show",
        "on_train_begin": "my_hooks:begin", "on_train_end": "my_hooks:end"}},
        {"LambdaCallback": {"on_epoch_end": "my_hooks:record"}}], fit={"epochs": 2})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "train begins []" and out[-1] == "train ends"
    # 120 rows in batches of 32: 4 batches an epoch, the last of 24
    assert [line for line in out if line.startswith("batch")] == [
        "batch 0 size 32", "batch 1 size 32", "batch 2 size 32", "batch 3 size 24"] * 2
    epochs = [line for line in out if line.startswith("epoch")]
    assert [line.split()[:2] for line in epochs] == [["epoch", "0"], ["epoch", "1"]]
    written = [json.loads(line) for line in open(tmp_path / "epochs.jsonl")]
    assert [w["epoch"] for w in written] == [0, 1]
    assert written[0]["keys"] == ["accuracy", "loss", "lr", "val_accuracy", "val_loss"]
    history = (run.path / "history.csv").read_text().splitlines()
    assert "-1.0" not in history[1]


def test_a_function_with_a_model_parameter_stops_training(tmp_path):
    hooks(tmp_path)
    run, _ = fit(tmp_path, [{"LambdaCallback": {"on_epoch_end": "my_hooks:stop_after_two"}}],
                 fit={"epochs": 6})
    rows = (run.path / "history.csv").read_text().splitlines()
    assert len(rows) == 1 + 2  # header and epochs 0, 1


def test_through_the_cli_with_a_module_next_to_the_config(tmp_path):
    hooks(tmp_path)
    config = write_config(tmp_path, """\
data: {train: {dataset: iris}, validation: {dataset: iris, subset: test}}
model:
  input_shape: [4]
  layers: [{Dense: {units: 3, activation: softmax}}]
compile: {loss: sparse_categorical_crossentropy, optimizer: adam}
fit: {epochs: 5, batch_size: 64}
callbacks:
  - LambdaCallback: {on_epoch_end: "my_hooks:stop_after_two", on_train_end: "my_hooks:end"}
""")
    r = CliRunner().invoke(main, ["fit", str(config), "--run-dir", str(tmp_path / "r"), "-q"])
    assert r.exit_code == 0, r.output
    assert "train ends" in r.output
    assert len((tmp_path / "r" / "history.csv").read_text().splitlines()) == 3
    summary = CliRunner().invoke(main, ["validate", str(tmp_path / "r")])
    assert summary.exit_code == 0, summary.output  # the run folder finds the module again


@pytest.mark.parametrize("hook, ref, message", [
    ("on_epoch_end", "my_hooks:wrong", "cannot be called as Keras calls it, "
                                       "on_epoch_end(epoch, logs)"),
    ("on_epoch_end", "my_hooks:plot_los", "has no 'plot_los'. Did you mean 'plot_loss'?"),
    ("on_batch_end", "no_such_module:f", "cannot import 'no_such_module'"),
    ("on_train_end", "my_hooks.end", "expected a reference module:Name"),
])
def test_bad_references_fail_before_training_with_the_line(tmp_path, hook, ref, message):
    hooks(tmp_path)
    config = write_config(tmp_path, f"""\
data: {{train: {{dataset: iris}}}}
model: {{input_shape: [4], layers: [{{Dense: {{units: 3, activation: softmax}}}}]}}
compile: {{loss: sparse_categorical_crossentropy, optimizer: adam}}
callbacks:
  - LambdaCallback: {{{hook}: "{ref}"}}
""")
    r = CliRunner().invoke(main, ["validate", str(config)])
    assert r.exit_code == 2
    assert message in r.output and "config.yaml:5" in r.output, r.output


def test_an_exception_in_a_function_is_the_users_with_its_line(tmp_path):
    hooks(tmp_path)
    config = write_config(tmp_path, """\
data: {train: {dataset: iris}}
model: {input_shape: [4], layers: [{Dense: {units: 3, activation: softmax}}]}
compile: {loss: sparse_categorical_crossentropy, optimizer: adam}
fit: {epochs: 2}
callbacks: [{LambdaCallback: {on_epoch_end: "my_hooks:fails"}}]
""")
    r = CliRunner().invoke(main, ["fit", str(config), "--run-dir", str(tmp_path / "r"), "-q"])
    assert r.exit_code == 2
    assert "RuntimeError: boom" in r.output and "my_hooks.py:" in r.output


def test_config_round_trip_and_schema():
    from trainer.config.families import callbacks
    from trainer.config.registry import config_of

    cb = callbacks.get({"LambdaCallback": {"on_epoch_end": "m:f"}})
    assert config_of(cb) == {"LambdaCallback": {
        "on_epoch_begin": None, "on_epoch_end": "m:f", "on_batch_begin": None,
        "on_batch_end": None, "on_train_begin": None, "on_train_end": None}}
    with pytest.raises(ConfigError, match="expected module:function"):
        callbacks.get({"LambdaCallback": {"on_epoch_end": "print"}})
    schema = json.loads((ROOT / "schemas" / "config.schema.json").read_text())
    args = schema["$defs"]["callback"]["anyOf"][0]["anyOf"][1]["properties"]["LambdaCallback"]
    obj = next(a for a in args["anyOf"] if a.get("type") == "object")
    assert sorted(obj["properties"]) == sorted(
        ["on_epoch_begin", "on_epoch_end", "on_batch_begin", "on_batch_end",
         "on_train_begin", "on_train_end"])
