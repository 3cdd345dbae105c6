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


def test_append_adds_rows_without_a_second_header(tmp_path, monkeypatch):
    # without a run (library use) the file is relative to the working folder
    monkeypatch.chdir(tmp_path)
    (tmp_path / "log.csv").write_text("epoch,loss\n0,1.0\n")

    def log(**args):
        c = CSVLogger("log.csv", **args)
        c.set_context(None, None, {"metrics": ["loss"]})
        c.on_train_begin()
        c.on_epoch_end(0, {"loss": 0.5})

    log(append=True)
    assert read(tmp_path / "log.csv") == [["epoch", "loss"], ["0", "1.0"], ["0", "0.5"]]
    log()  # append false: overwrite
    assert read(tmp_path / "log.csv") == [["epoch", "loss"], ["0", "0.5"]]


def test_filename_must_stay_in_the_run():
    with pytest.raises(ConfigError, match="CSVLogger.filename"):
        CSVLogger("../log.csv")
