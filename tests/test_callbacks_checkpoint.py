import h5py
import numpy as np
import pytest

from cbhelp import fit
from trainer.callbacks.model_checkpoint import ModelCheckpoint
from trainer.errors import ConfigError


def test_template_filled_from_epoch_and_logs(tmp_path):
    run, _ = fit(tmp_path, [{"ModelCheckpoint": {"filepath": "w.{epoch:02d}-{val_loss:.2f}.h5"}}],
                 fit={"epochs": 3})
    rows = run.path.joinpath("history.csv").read_text().splitlines()[1:]
    names = sorted(p.name for p in run.checkpoints.glob("w.*.h5"))
    header = run.path.joinpath("history.csv").read_text().splitlines()[0].split(",")
    col = header.index("val_loss")
    expected = sorted(f"w.{i + 1:02d}-{float(r.split(',')[col]):.2f}.h5" for i, r in enumerate(rows))
    assert names == expected  # epoch is 1-based in the name, as Keras
    with h5py.File(run.checkpoints / names[0]) as f:
        assert "dense" in f and "optimizer_weights" in f


def test_save_best_only_saves_on_improvement_and_writes_best_h5(tmp_path):
    run, _ = fit(tmp_path, [{"ModelCheckpoint": {"filepath": "e{epoch}.h5", "monitor": "val_accuracy",
                                                 "save_best_only": True}}],
                 fit={"epochs": 5})
    import csv
    rows = list(csv.DictReader(open(run.path / "history.csv")))
    best, improved = -np.inf, []
    for i, r in enumerate(rows):
        if float(r["val_accuracy"]) > best:
            best = float(r["val_accuracy"])
            improved.append(f"e{i + 1}.h5")
    assert sorted(p.name for p in run.checkpoints.glob("e*.h5")) == sorted(improved)
    assert (run.checkpoints / "best.h5").exists()
    with h5py.File(run.checkpoints / "best.h5") as a, \
            h5py.File(run.checkpoints / improved[-1]) as b:
        np.testing.assert_array_equal(a["dense/dense/kernel:0"][()], b["dense/dense/kernel:0"][()])


def test_weights_only_and_period(tmp_path):
    run, _ = fit(tmp_path, [{"ModelCheckpoint": {"filepath": "sub/w{epoch}.h5", "period": 2,
                                                 "save_weights_only": True}}],
                 fit={"epochs": 4})
    assert sorted(p.name for p in (run.checkpoints / "sub").glob("*.h5")) == ["w2.h5", "w4.h5"]
    with h5py.File(run.checkpoints / "sub" / "w4.h5") as f:
        assert "optimizer_weights" not in f and "dense_1" in f


def test_batch_save_freq(tmp_path):
    # iris train: 120 rows, batch 32 → 4 batches per epoch; every 3 batches over 2 epochs
    run, _ = fit(tmp_path, [{"ModelCheckpoint": {"filepath": "b{epoch}-{batch}.h5",
                                                 "save_freq": 3}}], fit={"epochs": 2})
    assert sorted(p.name for p in run.checkpoints.glob("b?-*.h5")) == ["b1-2.h5", "b2-1.h5"]


@pytest.mark.parametrize("path", ["/tmp/x.h5", "../x.h5", "a/../../x.h5", "~/x.h5"])
def test_paths_outside_the_run_are_config_errors(path):
    with pytest.raises(ConfigError, match="inside the run folder"):
        ModelCheckpoint(filepath=path)


def test_template_with_attribute_access_is_refused():
    with pytest.raises(ConfigError, match="plain name"):
        ModelCheckpoint(filepath="{epoch.__class__}.h5")


def test_unknown_template_field_and_unavailable_monitor_fail_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"uses \{val_acc\}.*Available: epoch, loss, "
                                          r"accuracy, val_loss, val_accuracy, lr"):
        fit(tmp_path, [{"ModelCheckpoint": {"filepath": "w{val_acc}.h5"}}])
    with pytest.raises(ConfigError, match="monitors 'val_loss'.*need data.validation") as err:
        fit(tmp_path, [{"ModelCheckpoint": {"filepath": "w.h5", "save_best_only": True}}],
            run="r2", data={"validation": None})
    assert "config.yaml" in str(err.value)


def test_mode_auto_follows_keras_2():
    assert ModelCheckpoint("x.h5", monitor="val_acc").tracker.higher
    assert ModelCheckpoint("x.h5", monitor="val_accuracy").tracker.higher
    assert not ModelCheckpoint("x.h5", monitor="val_loss").tracker.higher
    assert not ModelCheckpoint("x.h5", monitor="val_accuracy", mode="min").tracker.higher
