import csv
import json

import numpy as np
import pytest

from cbhelp import fit
from trainer.callbacks.early_stopping import EarlyStopping
from trainer.errors import ConfigError


class FakeModel:
    """Weights are one number: the epoch they were set at."""

    def __init__(self):
        self.stop_training = False
        self.w = np.zeros(1)

    def get_weights(self):
        return {"layer": [self.w]}

    def set_weights(self, weights):
        self.w[...] = weights["layer"][0]


def drive(cb, values, key="val_loss"):
    """Feed one value per epoch; return the epoch training stopped after (or None)."""
    model = FakeModel()
    cb.set_context(model, None, {"metrics": ["loss", key]})
    cb.on_train_begin()
    for epoch, v in enumerate(values):
        model.w[...] = epoch
        cb.on_epoch_end(epoch, {key: v})
        if model.stop_training:
            break
    cb.on_train_end()
    return (epoch if model.stop_training else None), model


def test_patience_counts_epochs_without_improvement():
    stopped, _ = drive(EarlyStopping(patience=2), [1.0, 0.9, 0.95, 0.91, 0.5])
    assert stopped == 3  # epochs 2 and 3 did not improve on 0.9


def test_patience_zero_keeps_going_while_improving():
    assert drive(EarlyStopping(patience=0), [1.0, 0.9, 0.8, 0.85])[0] == 3


def test_min_delta_and_mode():
    assert drive(EarlyStopping(patience=1, min_delta=0.05), [1.0, 0.97, 0.9])[0] == 1
    assert drive(EarlyStopping(monitor="val_accuracy", patience=1), [0.5, 0.6, 0.55],
                 key="val_accuracy")[0] == 2
    assert drive(EarlyStopping(monitor="val_accuracy", patience=1, mode="min"), [0.5, 0.6],
                 key="val_accuracy")[0] == 1


def test_baseline_must_be_beaten_within_patience():
    # improving but never below the baseline 0.5: stops once patience epochs have passed
    assert drive(EarlyStopping(patience=2, baseline=0.5), [0.9, 0.8, 0.7, 0.6])[0] == 1
    assert drive(EarlyStopping(patience=3, baseline=0.5), [0.9, 0.8, 0.7, 0.6])[0] == 2
    assert drive(EarlyStopping(patience=2, baseline=0.5), [0.9, 0.4, 0.3, 0.2])[0] is None


def test_start_from_epoch_ignores_warm_up():
    assert drive(EarlyStopping(patience=1, start_from_epoch=2), [1.0, 2.0, 3.0, 2.5, 2.6])[0] == 4


def test_restore_best_weights_when_stopping_and_when_epochs_run_out():
    stopped, model = drive(EarlyStopping(patience=1, restore_best_weights=True), [1.0, 0.5, 0.7])
    assert stopped == 2 and model.w[0] == 1
    # Keras 2 restored only when it stopped the run; we restore whenever training ends
    stopped, model = drive(EarlyStopping(patience=5, restore_best_weights=True), [1.0, 0.5, 0.7])
    assert stopped is None and model.w[0] == 1


def test_state_round_trips_through_json():
    cb = EarlyStopping(patience=3)
    drive(cb, [1.0, 0.5, 0.7])
    state = json.loads(json.dumps(cb.get_state()))
    assert state == {"best": 0.5, "wait": 1, "stopped_epoch": 0, "best_epoch": 1}
    fresh = EarlyStopping(patience=3)
    fresh.set_state(state)
    fresh.set_context(FakeModel(), None, {"metrics": ["val_loss"]})
    fresh.on_epoch_end(3, {"val_loss": 0.8})
    fresh.on_epoch_end(4, {"val_loss": 0.8})
    assert fresh.model.stop_training and fresh.stopped_epoch == 4
    assert json.dumps(EarlyStopping().get_state())  # infinity is JSON-able too


def test_stops_a_real_run_and_writes_best_h5(tmp_path):
    run, _ = fit(tmp_path, [{"EarlyStopping": {"monitor": "loss", "patience": 0,
                                               "min_delta": 10}}], fit={"epochs": 6})
    rows = list(csv.DictReader(open(run.path / "history.csv")))
    assert len(rows) == 2  # epoch 0 sets the best; epoch 1 cannot improve by 10
    assert (run.checkpoints / "best.h5").exists()
    assert json.loads((run.path / "run.json").read_text())["status"] == "completed"


def test_unknown_monitor_names_what_is_logged(tmp_path):
    with pytest.raises(ConfigError, match="EarlyStopping monitors 'val_acc'.*Available: loss, "
                                          "accuracy, val_loss, val_accuracy, lr"):
        fit(tmp_path, [{"EarlyStopping": {"monitor": "val_acc"}}])


def test_a_resumed_run_restores_the_best_weights_from_best_h5(tmp_path):
    """After a resume the best epoch's weights are not in memory: best.h5 has them."""
    import h5py

    from cbhelp import config
    from trainer.app import fit as api
    from trainer.store.runs import Run

    first, _ = fit(tmp_path, [{"EarlyStopping": {"patience": 10, "restore_best_weights": True}}],
                   fit={"epochs": 3})
    with h5py.File(first.checkpoints / "best.h5") as f:
        best = f["dense"]["dense/kernel:0"][()]
    cfg = config(tmp_path, [{"EarlyStopping": {"patience": 10, "restore_best_weights": True}}])
    _, built = api.make_callbacks(cfg, 0)
    stopper = built[1]
    stopper.set_state({"best": -1.0, "wait": 0, "stopped_epoch": 0, "best_epoch": 1})
    model = api.build(cfg)
    stopper.set_context(model, Run(first.path), {"metrics": ["val_loss"]})
    stopper.on_train_end()
    np.testing.assert_array_equal(model.get_weights()["dense"][0], best)
