import json

import h5py
import pytest

from cbhelp import config, fit
from trainer.app import fit as api
from trainer.callbacks.history import BaseLogger
from trainer.callbacks.progbar import ProgbarLogger
from trainer.config.families import callbacks
from trainer.config.registry import config_of

EVERY = [
    {"ModelCheckpoint": {"filepath": "w{epoch}.h5", "save_best_only": True}},
    {"EarlyStopping": {"patience": 3}},
    {"ReduceLROnPlateau": {"patience": 1, "epsilon": 0.01}},
    {"LearningRateScheduler": {"schedule": {"table": {0: 0.05}}}},
    {"CSVLogger": "log.csv"},
    "TerminateOnNaN",
    "BaseLogger",
    {"ProgbarLogger": {"verbose": 0}},
]


def test_every_callback_state_is_stored_in_last_h5(tmp_path):
    run, _ = fit(tmp_path, EVERY, fit={"epochs": 2})
    with h5py.File(run.checkpoints / "last.h5") as f:
        state = json.loads(f["trainer_state"].attrs["state"])
    by_class = state["loop"]["callbacks"]  # class name (#n for repeats) → state
    assert by_class["EarlyStopping"]["wait"] in (0, 1)
    assert set(by_class["ReduceLROnPlateau"]) == {"best", "wait", "cooldown_counter"}
    assert by_class["CSVLogger"]["keys"] == ["accuracy", "loss", "lr", "val_accuracy",
                                             "val_loss"]
    assert by_class["History"]["epoch"] == [0, 1]
    assert by_class["ModelCheckpoint"]["best"] == pytest.approx(
        min(by_class["History"]["history"]["val_loss"]))
    # the user's ProgbarLogger replaces the default one
    assert [k for k in by_class if k.startswith("ProgbarLogger")] == ["ProgbarLogger"]


def test_every_callback_round_trips_through_its_config(tmp_path):
    cfg = config(tmp_path, EVERY)
    _, built = api.make_callbacks(cfg, 0)
    for spec, cb in zip(EVERY, built[1:]):
        again = callbacks.get(config_of(cb))
        assert config_of(again) == config_of(cb), spec
    assert config_of(built[3])["ReduceLROnPlateau"]["min_delta"] == 0.01


def test_only_the_first_monitor_callback_writes_best_h5(tmp_path):
    cfg = config(tmp_path, [{"EarlyStopping": {}}, {"ModelCheckpoint": "a.h5"},
                            {"ModelCheckpoint": "b.h5"}])
    _, built = api.make_callbacks(cfg, 0)
    assert [c.writes_best for c in built[1:4]] == [False, True, False]


def test_progbar_verbose_0_is_silent_and_2_prints_a_line_per_epoch(tmp_path, capsys):
    fit(tmp_path, [{"ProgbarLogger": {"verbose": 0}}], fit={"epochs": 2})
    assert capsys.readouterr().out == ""
    fit(tmp_path, [{"ProgbarLogger": {"verbose": 2}}], fit={"epochs": 2}, run="r2")
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("Epoch")]
    assert [l.split(" - ")[0] for l in lines] == ["Epoch 1/2", "Epoch 2/2"]
    assert "val_loss:" in lines[0]


def test_base_logger_fills_only_what_the_epoch_lacks():
    cb = BaseLogger()
    cb.on_epoch_begin(0)
    cb.on_batch_end(0, {"batch": 0, "size": 2, "loss": 1.0, "extra": 3.0})
    cb.on_batch_end(1, {"batch": 1, "size": 1, "loss": 4.0, "extra": 6.0})
    logs = {"loss": 0.5}
    cb.on_epoch_end(0, logs)
    assert logs == {"loss": 0.5, "extra": 4.0}  # (3·2 + 6·1) / 3


def test_default_progress_bar_is_added_once():
    history, built = api.make_callbacks({"callbacks": []}, 2)
    assert [type(c) for c in built][-1] is ProgbarLogger and built[0] is history


def test_a_bad_callback_fails_validate_and_fit_before_data_is_read(workdir):
    import yaml
    from click.testing import CliRunner

    from cbhelp import BASE
    from conftest import write_config
    from trainer.cli import main

    value = dict(BASE, callbacks=[{"ModelCheckpoint": {"filepath": "../../w.h5"}}])
    value["data"] = dict(BASE["data"], train={"path": "missing.npz", "x": "x", "y": "y"})
    path = write_config(workdir, yaml.safe_dump(value, sort_keys=False))
    for command in ("validate", "fit"):
        r = CliRunner().invoke(main, [command, str(path)])
        assert r.exit_code == 2, r.output
        assert "callbacks[0]: ModelCheckpoint.filepath must be a relative path inside the " \
               "run folder" in r.output and "config.yaml:" in r.output


def test_the_run_config_writes_out_callback_defaults(tmp_path):
    import yaml

    run, _ = fit(tmp_path, [{"EarlyStopping": {"patience": 2}}, "TerminateOnNaN"],
                 fit={"epochs": 1})
    saved = yaml.safe_load((run.path / "config.yaml").read_text())["callbacks"]
    assert saved[0]["EarlyStopping"] == {"monitor": "val_loss", "min_delta": 0.0, "patience": 2,
                                         "verbose": 0, "mode": "auto",
                                         "restore_best_weights": False, "start_from_epoch": 0}
    assert saved[1] == "TerminateOnNaN"


LOGS = {"loss": 0.1234567, "accuracy": 0.9876543, "val_loss": 0.2345678,
        "val_accuracy": 0.9012345, "lr": 0.001}
WHOLE = {"loss: 0.1235", "accuracy: 0.9877", "val_loss: 0.2346", "val_accuracy: 0.9012"}


def _terminal_run(monkeypatch, width, steps=34):
    """ProgbarLogger on a terminal ``width`` columns wide: what stays on screen."""
    import io

    from rich.console import Console

    from trainer import console as console_mod

    buffer = io.StringIO()
    term = Console(file=buffer, width=width, force_terminal=True, color_system=None,
                   highlight=False, soft_wrap=True)
    monkeypatch.setattr(console_mod, "console", lambda: term)
    monkeypatch.setattr(console_mod, "is_terminal", lambda: True)
    bar = ProgbarLogger()
    bar.params = {"epochs": 30, "steps": steps}
    bar.on_train_begin()
    bar.on_epoch_begin(2)
    for b in range(steps):
        bar.on_batch_end(b, {"batch": b, "size": 32, "loss": 0.1234567,
                             "accuracy": 0.9876543})
    bar.on_epoch_end(2, dict(LOGS))
    bar.on_train_end()
    return buffer.getvalue()


@pytest.mark.parametrize("width", [120, 80, 60, 40, 24])
def test_epoch_line_keeps_every_number_whole_at_any_width(monkeypatch, width):
    """At 80 columns the final epoch line cut `val_accuracy: 0.90…`: now the bar goes
    first, then the values wrap, each `name: value` whole, no line past the width."""
    import re

    out = _terminal_run(monkeypatch, width)
    final = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out).rsplit("\r", 1)[-1]
    lines = [line for line in final.splitlines() if line.strip()]
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("Epoch 3/30")):]
    assert "…" not in final
    assert all(len(line) <= width for line in lines), lines
    items = {item.strip() for line in lines for item in line.split(" - ")}
    assert WHOLE <= items, lines
    assert (len(lines) == 1) == (width >= 110)  # one line with its bar where all fits
    assert "━" in lines[0] or width < 50


def test_layout_drops_the_bar_before_wrapping():
    from trainer.callbacks.progbar import layout, render

    head, tail = "Epoch 3/30", "34/34 0:00:01"
    items = sorted(WHOLE)
    wide = render(layout(head, items, 200, 1.0, tail), 1.0).plain
    assert wide.count("\n") == 0 and wide.startswith("Epoch 3/30 ━") and tail in wide
    exact = len(head) + 1 + len(tail) + 3 + len(" - ".join(items))
    no_bar = render(layout(head, items, exact, 1.0, tail), 1.0)
    assert no_bar.plain == f"{head} {tail} - {' - '.join(items)}"
    wrapped = render(layout(head, items, 50, 1.0, tail), 1.0).plain.splitlines()
    assert wrapped[0].startswith("Epoch 3/30 ━") and wrapped[0].endswith(tail)
    assert len(wrapped) > 2


def test_verbose_2_on_a_narrow_terminal_wraps_whole_values(monkeypatch, capsys):
    from rich.console import Console

    from trainer import console as console_mod

    term = Console(width=40, force_terminal=True)
    monkeypatch.setattr(console_mod, "console", lambda: term)
    monkeypatch.setattr(console_mod, "is_terminal", lambda: True)
    bar = ProgbarLogger(verbose=2)
    bar.params = {"epochs": 30, "steps": 3}
    bar.on_train_begin()
    bar.on_epoch_begin(2)
    bar.on_epoch_end(2, dict(LOGS))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Epoch 3/30 - ") and all(len(line) <= 40 for line in lines)
    assert WHOLE <= {item.strip() for line in lines for item in line.split(" - ")}
