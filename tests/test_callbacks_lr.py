import csv
import json

import pytest

from cbhelp import fit
from trainer.callbacks.learning_rate import LearningRateScheduler, ReduceLROnPlateau
from trainer.errors import ConfigError
from trainer.optimizers.sgd import SGD


class FakeModel:
    def __init__(self, lr=0.1):
        self.optimizer = SGD(lr=lr)
        self.stop_training = False


def lrs_after(cb, values, lr=0.1):
    model = FakeModel(lr)
    cb.set_context(model, None, {"metrics": ["loss", "val_loss"]})
    cb.on_train_begin()
    out = []
    for epoch, v in enumerate(values):
        cb.on_epoch_begin(epoch)
        cb.on_epoch_end(epoch, {"val_loss": v})
        out.append(round(model.optimizer.current_lr(), 10))
    return out


def test_reduce_on_plateau_patience_factor_min_lr():
    cb = ReduceLROnPlateau(factor=0.5, patience=2, min_lr=0.03)
    assert lrs_after(cb, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]) == \
        [0.1, 0.1, 0.05, 0.05, 0.03, 0.03, 0.03]


def test_reduce_on_plateau_cooldown_and_min_delta():
    cb = ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2)
    # as Keras 2: reduce at epoch 1; the cooldown counter runs out during epoch 3,
    # which counts again and reduces; the same at epoch 5
    assert lrs_after(cb, [1.0] * 6) == [0.1, 0.05, 0.05, 0.025, 0.025, 0.0125]
    # a fall of less than min_delta is no improvement; epsilon is its Keras 2 alias
    for cb in (ReduceLROnPlateau(patience=1, min_delta=0.1),
               ReduceLROnPlateau(patience=1, epsilon=0.1)):
        assert cb.min_delta == 0.1
        assert lrs_after(cb, [1.0, 0.95]) == [0.1, 0.01]


def test_reduce_on_plateau_state_is_json():
    cb = ReduceLROnPlateau(patience=3)
    lrs_after(cb, [1.0, 2.0])
    state = json.loads(json.dumps(cb.get_state()))
    assert state == {"best": 1.0, "wait": 1, "cooldown_counter": 0}
    other = ReduceLROnPlateau(patience=3)
    other.set_state(state)
    assert other.wait == 1 and other.tracker.best == 1.0


def test_factor_must_be_below_one():
    with pytest.raises(ConfigError, match="factor"):
        ReduceLROnPlateau(factor=1.5)


class Halving:
    """A test-local schedule: the contract of trainer/schedules (``__call__(step)``)."""

    def __call__(self, step):
        return 0.2 * 0.5 ** step


def test_scheduler_calls_a_schedule_with_the_epoch():
    assert lrs_after(LearningRateScheduler(Halving()), [1.0, 1.0, 1.0]) == [0.2, 0.1, 0.05]


def test_scheduler_table_in_a_real_run_sets_the_logged_lr(tmp_path):
    run, _ = fit(tmp_path, [{"LearningRateScheduler": {"schedule": {"table": {1: 0.02, 3: 0.005}}}}])
    rows = list(csv.DictReader(open(run.path / "history.csv")))
    # epoch 0 keeps the optimizer's lr (0.05); then the table
    assert [float(r["lr"]) for r in rows] == [0.05, 0.02, 0.02, 0.005]


def test_reduce_on_plateau_in_a_real_run(tmp_path):
    run, _ = fit(tmp_path, [{"ReduceLROnPlateau": {"monitor": "loss", "patience": 0,
                                                   "min_delta": 100, "factor": 0.5}}])
    rows = list(csv.DictReader(open(run.path / "history.csv")))
    assert [float(r["lr"]) for r in rows] == [0.05, 0.05, 0.025, 0.0125]  # epoch 0 sets the best


def test_bad_table_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="schedule"):
        fit(tmp_path, [{"LearningRateScheduler": {"schedule": {"table": {"x": 0.1}}}}])
    with pytest.raises(ConfigError, match="positive lr"):
        LearningRateScheduler({"table": {0: -1.0}})
