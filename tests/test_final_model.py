"""What a run means (issue 23): its final model is what Keras holds once fit returned
(EarlyStopping's restored best weights), a built or imported model that is not trained
is a valid run, and a config predicts and evaluates without training."""

import csv
import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from conftest import ROOT
from trainer.cli import main
from trainer.store.runs import Run

QUICK = ROOT / "configs" / "quickstart.yaml"
KERAS = ROOT / "configs" / "keras3_finetune.yaml"
# maximising the training loss: the best epoch is the first, restored at the end
RESTORE = ('callbacks=[{EarlyStopping: {monitor: loss, mode: max, patience: 10, '
           'restore_best_weights: true}}]')


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def history(folder):
    with open(folder / "history.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def restored(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run") / "r"
    r = invoke("fit", QUICK, "--set", "fit.epochs=3", "--set", "expect={}", "--set", RESTORE,
               "-q", "--run-dir", folder)
    assert r.exit_code == 0, r.output
    return folder


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from trainer.config.families import datasets

    x, _ = datasets.get({"digits": {"subset": "test"}}).load()
    path = tmp_path_factory.mktemp("x") / "x.npy"
    np.save(path, x[:20])
    return path


def evaluated(*args):
    r = invoke("evaluate", *args, "--json", "--data", "validation")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_final_model_is_the_restored_best_one(restored):
    rows = history(restored)
    assert len(rows) == 3 and rows[0]["val_loss"] != rows[-1]["val_loss"]
    assert (restored / "checkpoints" / "final.h5").is_file()
    assert Run(restored).model_file() == restored / "checkpoints" / "final.h5"
    # evaluate uses the final model: epoch 1's weights, whose validation loss epoch 1 logged
    assert evaluated(restored)["loss"] == pytest.approx(rows[0]["val_loss"], rel=1e-6)
    # last.h5 stays the last epoch (the resume point)
    last = evaluated(restored, "--checkpoint", restored / "checkpoints" / "last.h5")
    assert last["loss"] == pytest.approx(rows[-1]["val_loss"], rel=1e-6)


def test_run_json_and_metrics_json_report_the_final_model(restored):
    first = history(restored)[0]
    final = json.loads((restored / "run.json").read_text())["final_metrics"]
    assert final["val_loss"] == pytest.approx(first["val_loss"])
    assert final["val_accuracy"] == pytest.approx(first["val_accuracy"])
    report = json.loads((restored / "metrics.json").read_text())
    assert report["metrics"]["val_loss"] == pytest.approx(first["val_loss"])


def test_predict_and_export_use_the_final_model(restored, inputs, tmp_path):
    def predicted(*args):
        out = tmp_path / f"p{len(list(tmp_path.iterdir()))}.npy"
        r = invoke("predict", restored, "--input", inputs, "--output", out, *args)
        assert r.exit_code == 0, r.output
        return np.load(out)

    final = predicted("--checkpoint", restored / "checkpoints" / "final.h5")
    last = predicted("--checkpoint", restored / "checkpoints" / "last.h5")
    assert not np.allclose(final, last)
    np.testing.assert_array_equal(predicted(), final)
    import h5py

    assert invoke("export", restored, tmp_path / "m.h5").exit_code == 0
    from trainer.app import fit as api
    from trainer.store import checkpoint
    model = api.build(api.load_run_config(restored))
    checkpoint.load(restored / "checkpoints" / "final.h5", model, with_optimizer=False)
    with h5py.File(tmp_path / "m.h5") as f:
        kernel = f["model_weights/dense/dense/kernel:0"][()]
    np.testing.assert_array_equal(kernel, model.layers[1].get_weights()[0])


def test_a_resumed_run_drops_the_final_model_of_its_earlier_end(restored, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(restored, copy)
    run = Run(copy)
    run.reopen(yaml.safe_load(run.load_config_text()), ["trainer", "fit", "--resume"], {})
    assert not run.final.exists() and run.model_file() == run.last


def test_epochs_equal_to_initial_epoch_is_a_valid_untrained_run(workdir):
    r = invoke("fit", QUICK, "--set", "fit.initial_epoch=2", "--set", "fit.epochs=2",
               "--set", "expect={}", "--run-dir", workdir / "u")
    assert r.exit_code == 0, r.output
    assert "no history.csv" not in r.output and "run saved to" in r.output
    folder = workdir / "u"
    assert (folder / "checkpoints" / "last.h5").is_file()
    assert (folder / "checkpoints" / "final.h5").is_file()
    assert (folder / "history.csv").read_text() == "epoch\n"
    assert json.loads((folder / "run.json").read_text())["status"] == "completed"
    assert 0 <= evaluated(folder)["accuracy"] <= 0.5  # untrained: about chance
    # and it resumes into a trained run
    r = invoke("fit", "--resume", folder, "--set", "fit.epochs=3", "--set", "expect={}", "-q")
    assert r.exit_code == 0, r.output
    assert [row["epoch"] for row in history(folder)] == [2]


def test_an_imported_keras_model_predicts_and_evaluates_from_its_config(inputs, workdir):
    r = invoke("predict", KERAS, "--input", inputs, "--output", workdir / "p.npy")
    assert r.exit_code == 0, r.output
    assert "warning" not in r.output
    # the same numbers as a run of that model trained for no epoch
    r = invoke("fit", KERAS, "--set", "fit.initial_epoch=5", "--set", "expect={}", "-q",
               "--run-dir", workdir / "k")
    assert r.exit_code == 0, r.output
    r = invoke("predict", workdir / "k", "--input", inputs, "--output", workdir / "q.npy")
    np.testing.assert_allclose(np.load(workdir / "p.npy"), np.load(workdir / "q.npy"),
                               rtol=1e-6)
    accuracy = evaluated(KERAS)["accuracy"]
    assert accuracy >= 0.9  # Keras's weights: about 0.94
    assert accuracy == pytest.approx(evaluated(workdir / "k")["accuracy"])


def test_a_config_without_weights_predicts_from_a_fresh_init_with_a_warning(inputs):
    r = invoke("predict", QUICK, "--input", inputs)
    assert r.exit_code == 0, r.output
    assert "warning: predict: quickstart.yaml names no weights" in r.output
    r = invoke("evaluate", QUICK, "--set", "expect={}")
    assert r.exit_code == 0 and "fresh initialisation from seed 0" in r.output
