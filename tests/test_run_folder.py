"""What goes into a run folder, and what never does: a new run refuses a folder that
holds a run (`--resume` it, or `--force`) or a user's files; a callback cannot name one
of the run's own files; a run killed before its first checkpoint resumes from the
beginning; a run that diverged before one says so."""

import json
import shutil

import pytest
import yaml
from click.testing import CliRunner

from cbhelp import BASE
from conftest import write_config
from resume_helpers import (FILE_CALLBACKS, QUICK, TINY, StopAt, assert_same_run, fit,
                            resume)
from trainer import runfiles
from trainer.cli import main
from trainer.errors import InterruptedRun


def cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in r.output
    return r


def quick(run_dir, *args, sets=TINY):
    return cli("fit", QUICK, "--run-dir", run_dir, *sum((["--set", s] for s in sets), []),
               *args)


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run with every kind of callback file."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    fit(run_dir, FILE_CALLBACKS)
    return run_dir


# -- a folder that holds a run ------------------------------------------------------------
@pytest.mark.parametrize("stopped", [False, True])
def test_a_new_run_in_a_folder_holding_a_run_is_refused(tmp_path, finished, stopped):
    run_dir = tmp_path / "run"
    if stopped:
        with pytest.raises(InterruptedRun):
            fit(run_dir, callbacks=[StopAt(4)])
    else:
        shutil.copytree(finished, run_dir)
    before = snapshot(run_dir)
    r = quick(run_dir)
    assert r.exit_code == 2, r.output
    assert "already holds a run" in r.output
    assert f"trainer fit --resume {run_dir}" in r.output and "a new folder" in r.output
    assert snapshot(run_dir) == before  # nothing replaced, nothing mixed in


def test_force_removes_the_old_run_first(tmp_path, finished):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    r = quick(run_dir, "--force")  # the same run without callbacks: none of their files
    assert r.exit_code == 0, r.output
    left = set(snapshot(run_dir))
    assert not any(name.startswith(("logs/", "tb/")) for name in left), left
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {
        "last.h5", "last.prev.h5", "final.h5"}
    assert "resumes" not in json.loads((run_dir / "run.json").read_text())
    assert not (run_dir / "logs").exists() and not (run_dir / "tb").exists()


@pytest.mark.parametrize("in_run,name,text", [
    (False, "config.yaml", "# my config, with comments\nname: mine\n"),
    (False, ".config.yaml.x1y2.tmp", "a user's temporary file"),
    (False, ".lock", ""),
    (True, "notes/todo.txt", "a user's notes"),
    (True, "checkpoints/mine.h5", "a user's weights"),
    (True, "logs/.mine.tmp", "")])
@pytest.mark.parametrize("force", [False, True])
def test_a_folder_with_files_trainer_did_not_write_is_refused(tmp_path, finished, in_run, name,
                                                             text, force):
    folder = tmp_path / "run"
    if in_run:
        shutil.copytree(finished, folder)
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    before = snapshot(folder)
    r = quick(folder, *(["--force"] if force else []))
    assert r.exit_code == 2, r.output
    assert "files trainer did not write" in r.output and name in r.output
    assert snapshot(folder) == before


def test_an_empty_folder_is_fine(tmp_path):
    (tmp_path / "run").mkdir()
    assert quick(tmp_path / "run").exit_code == 0


def test_force_without_a_folder_is_a_usage_error():
    r = cli("fit", QUICK, "--force")
    assert r.exit_code == 2 and "--resume" in r.output and "--run-dir" in r.output


# -- the run's own names ------------------------------------------------------------------
def callback_config(folder, callback):
    value = dict(BASE, callbacks=["EarlyStopping", callback])
    return write_config(folder, yaml.safe_dump(value, sort_keys=False))


@pytest.mark.parametrize("callback,key", [
    ({"CSVLogger": {"filename": "config.yaml"}}, "CSVLogger.filename"),
    ({"CSVLogger": {"filename": "run.json"}}, "CSVLogger.filename"),
    ({"CSVLogger": {"filename": "./history.csv"}}, "CSVLogger.filename"),
    ({"CSVLogger": {"filename": "metrics.json"}}, "CSVLogger.filename"),
    ({"CSVLogger": {"filename": ".lock"}}, "CSVLogger.filename"),
    ({"CSVLogger": {"filename": "validation_rows.npy"}}, "CSVLogger.filename"),
    ({"CSVLogger": {"filename": "checkpoints"}}, "CSVLogger.filename"),
    ({"CSVLogger": {"filename": ".log.csv.abc.tmp"}}, "CSVLogger.filename"),
    ({"ModelCheckpoint": {"filepath": "last.h5"}}, "ModelCheckpoint.filepath"),
    ({"ModelCheckpoint": {"filepath": "last.prev.h5"}}, "ModelCheckpoint.filepath"),
    ({"ModelCheckpoint": {"filepath": "best.h5"}}, "ModelCheckpoint.filepath"),
    ({"TensorBoard": {"log_dir": "config.yaml"}}, "TensorBoard.log_dir"),
    ({"TensorBoard": {"log_dir": "checkpoints/last.h5"}}, "TensorBoard.log_dir")])
def test_a_callback_cannot_name_the_runs_own_files(workdir, callback, key):
    if "TensorBoard" in callback:
        pytest.importorskip("tensorboardX")
    path = callback_config(workdir, callback)
    r = cli("fit", path, "--run-dir", workdir / "run")
    assert r.exit_code == 2, r.output
    assert f"callbacks[1].{key}" in r.output and "the run's own" in r.output
    lines = path.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if next(iter(callback)) in ln)
    line = next(i for i, ln in enumerate(lines[start:], start + 1)
                if f"{key.split('.')[1]}:" in ln)  # the argument's own line
    assert f"config.yaml:{line}:" in r.output
    assert not (workdir / "run").exists()  # refused before training
    assert cli("validate", path).exit_code == 2


def test_a_file_name_with_a_line_break_is_refused(workdir):
    # .outputs lists one path a line: "log\nconfig.yaml" would read as two, and
    # --force would take the user's config.yaml for the run's
    r = cli("fit", callback_config(workdir, {"CSVLogger": {"filename": "log\nconfig.yaml"}}),
            "--run-dir", workdir / "run")
    assert r.exit_code == 2 and "callbacks[1].CSVLogger.filename" in r.output
    assert "line break" in r.output and not (workdir / "run").exists()


def test_other_names_are_fine(workdir):
    for callback in ({"CSVLogger": {"filename": "checkpoints/log.csv"}},
                     {"ModelCheckpoint": {"filepath": "last{epoch}.h5"}}):
        assert cli("fit", callback_config(workdir, callback), "--run-dir",
                   workdir / f"run{len(list(workdir.iterdir()))}").exit_code == 0


def test_every_file_a_run_writes_is_reserved_or_recorded(workdir):
    """The reserved names are the run's real files: after a run with a validation
    split, gates and every file-writing callback, each file in the folder is either a
    reserved name or a callback output recorded in .outputs — and --force would find
    them all."""
    text = QUICK.read_text().replace("validation: {dataset: digits, subset: test}",
                                     "validation: {split: 0.2}")
    path = write_config(workdir, text)
    r = cli("fit", path, "--run-dir", workdir / "run", *sum((["--set", s] for s in
                                                              [*TINY, FILE_CALLBACKS]), []))
    assert r.exit_code in (0, 4), r.output
    run_dir = workdir / "run"
    files = set(snapshot(run_dir))
    recorded = set(runfiles.recorded(run_dir))
    assert {"validation_rows.npy", "metrics.json", ".outputs"} <= files
    assert files <= set(runfiles.RESERVED) | recorded, files - set(runfiles.RESERVED)
    assert any(name.startswith("tb/train/") for name in recorded)
    assert runfiles.written(run_dir) == files


# -- a run stopped before its first checkpoint -----------------------------------------
def test_a_run_without_a_checkpoint_resumes_from_the_beginning(tmp_path, finished, capsys):
    # as kill -9 in the first second leaves it: run.json says running, no last.h5
    shutil.copytree(finished, tmp_path / "r")
    for name in ("checkpoints/last.h5", "checkpoints/last.prev.h5", "history.csv"):
        (tmp_path / "r" / name).unlink()
    meta = json.loads((tmp_path / "r/run.json").read_text())
    meta.update(status="running", ended=None)
    (tmp_path / "r/run.json").write_text(json.dumps(meta))
    resume(tmp_path / "r")
    assert "starting it again from the beginning" in capsys.readouterr().err
    assert_same_run(finished, tmp_path / "r")
    assert (tmp_path / "r/logs/train.csv").read_bytes() == \
        (finished / "logs/train.csv").read_bytes()


def test_a_run_stopped_before_training_resumes_from_the_beginning(tmp_path, finished):
    with pytest.raises(InterruptedRun):
        fit(tmp_path / "r", FILE_CALLBACKS, callbacks=[StopAt(1, "on_train_begin")])
    assert not (tmp_path / "r/checkpoints/last.h5").exists()
    resume(tmp_path / "r")
    assert_same_run(finished, tmp_path / "r")


# -- divergence before any checkpoint -----------------------------------------------------
def test_divergence_before_the_first_checkpoint_says_there_is_none(workdir):
    text = QUICK.read_text().replace("{Adam: {lr: 0.003}}", "{SGD: {lr: 1.0e+30}}").replace(
        "activation: softmax", "activation: linear").replace("loss: categorical_crossentropy",
                                                              "loss: mse")
    path = write_config(workdir, text)
    r = cli("fit", path, "--run-dir", workdir / "d", "--set", "fit.epochs=2", "-q")
    assert r.exit_code == 5, r.output
    assert "checkpoint is kept" not in r.output
    assert "no checkpoint was written yet" in r.output
    assert not (workdir / "d/checkpoints/last.h5").exists()
    meta = json.loads((workdir / "d/run.json").read_text())
    assert meta["status"] == "diverged" and "no checkpoint" in meta["error"]
