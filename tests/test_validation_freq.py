"""fit.validation_freq (Keras's): validate every N epochs or on listed epochs; history,
CSVLogger, checkpoints, monitors and the final metrics on the epochs in between."""

import csv
import json

import pytest

from cbhelp import fit


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_every_second_epoch_validates_with_the_same_numbers(tmp_path):
    every, _ = fit(tmp_path, run="every", fit={"epochs": 5})
    second, logs = fit(tmp_path, run="second", fit={"epochs": 5, "validation_freq": 2})
    a, b = rows(every.path / "history.csv"), rows(second.path / "history.csv")
    assert list(a[0]) == list(b[0])  # the same columns, val_ ones included
    for i, (x, y) in enumerate(zip(a, b)):
        assert x["loss"] == y["loss"]  # validating does not change training
        if (i + 1) % 2 == 0:
            assert x["val_loss"] == y["val_loss"] and y["val_accuracy"] != ""
        else:
            assert y["val_loss"] == "" and y["val_accuracy"] == ""
    # the run's final metrics: the last epoch's training values, epoch 4's val_ values
    meta = json.loads((second.path / "run.json").read_text())
    assert meta["final_metrics"]["loss"] == pytest.approx(float(b[4]["loss"]))
    assert meta["final_metrics"]["val_loss"] == pytest.approx(float(b[3]["val_loss"]))
    assert logs["val_loss"] == pytest.approx(float(b[3]["val_loss"]))


def test_listed_epochs_and_callbacks_that_watch_val_values(tmp_path):
    callbacks = [
        {"CSVLogger": {"filename": "log.csv"}},
        {"ModelCheckpoint": {"filepath": "w-{epoch:02d}-{val_loss:.3f}.h5"}},
        {"ModelCheckpoint": {"filepath": "best-val.h5", "monitor": "val_loss",
                             "save_best_only": True}},
        {"EarlyStopping": {"monitor": "val_loss", "patience": 5}},
        {"ReduceLROnPlateau": {"monitor": "val_loss", "patience": 1}},
    ]
    run, _ = fit(tmp_path, callbacks, fit={"epochs": 4, "validation_freq": [1, 3]})
    history = rows(run.path / "history.csv")
    assert [r["val_loss"] != "" for r in history] == [True, False, True, False]
    log = rows(run.path / "log.csv")
    assert [r["val_loss"] for r in log][1::2] == ["NA", "NA"]
    assert [float(r["val_loss"]) for r in log[0::2]] == \
        pytest.approx([float(r["val_loss"]) for r in history[0::2]], rel=1e-6)
    saved = sorted(p.name for p in run.checkpoints.glob("w-*.h5"))
    assert [name[:4] for name in saved] == ["w-01", "w-03"]
    assert (run.checkpoints / "best.h5").exists() and (run.checkpoints / "best-val.h5").exists()


def test_validation_freq_must_be_positive(tmp_path):
    from cbhelp import config
    from trainer.errors import ConfigError

    with pytest.raises(ConfigError, match="fit.validation_freq"):
        config(tmp_path, fit={"validation_freq": 0})
    with pytest.raises(ConfigError, match="fit.validation_freq"):
        config(tmp_path, fit={"validation_freq": [2, 2]})
