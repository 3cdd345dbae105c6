import csv

import pytest

from cbhelp import fit
from trainer.callbacks.csv_logger import CSVLogger
from trainer.errors import ConfigError


def read(path, sep=","):
    return list(csv.reader(open(path), delimiter=sep))


def test_header_and_one_row_per_epoch_as_keras(tmp_path):
    run, _ = fit(tmp_path, [{"CSVLogger": {"filename": "logs/train.csv", "separator": ";"}}],
                 fit={"epochs": 3})
    rows = read(run.path / "logs" / "train.csv", ";")
    assert rows[0] == ["epoch", "accuracy", "loss", "lr", "val_accuracy", "val_loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"]
    history = list(csv.DictReader(open(run.path / "history.csv")))
    assert float(rows[-1][2]) == pytest.approx(float(history[-1]["loss"]))


def test_append_adds_rows_without_a_second_header(tmp_path):
    fit(tmp_path, [{"CSVLogger": "log.csv"}], fit={"epochs": 2})
    fit(tmp_path, [{"CSVLogger": {"filename": "log.csv", "append": True}}], fit={"epochs": 2})
    rows = read(tmp_path / "run" / "log.csv")
    assert [r[0] for r in rows] == ["epoch", "0", "1", "0", "1"]
    fit(tmp_path, [{"CSVLogger": "log.csv"}], fit={"epochs": 1})  # append false: overwrite
    assert [r[0] for r in read(tmp_path / "run" / "log.csv")] == ["epoch", "0"]


def test_a_resumed_run_keeps_one_header_and_one_row_per_epoch(tmp_path):
    fit(tmp_path, [{"CSVLogger": "log.csv"}], fit={"epochs": 3})
    # resuming at epoch 2 (its row was written before the crash): it is written again
    fit(tmp_path, [{"CSVLogger": "log.csv"}], fit={"epochs": 4, "initial_epoch": 2})
    rows = read(tmp_path / "run" / "log.csv")
    assert [r[0] for r in rows] == ["epoch", "0", "1", "2", "3"]


def test_filename_must_stay_in_the_run():
    with pytest.raises(ConfigError, match="CSVLogger.filename"):
        CSVLogger("../log.csv")
