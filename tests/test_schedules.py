import numpy as np
"""Every learning-rate schedule's values at chosen steps, computed by hand, and a
schedule used as an optimizer's lr training end to end through the CLI."""

import csv
import math

import pytest
import yaml
from click.testing import CliRunner

from conftest import write_config
from trainer.cli import main
from trainer.errors import ConfigError
from trainer.config.families import schedules
from trainer.config.registry import config_of

PI = math.pi

# (spec, {step: lr}), every lr worked out by hand from the formula in the docstring
CASES = [
    ({"ExponentialDecay": {"initial_learning_rate": 0.1, "decay_steps": 10,
                           "decay_rate": 0.5}},
     {0: 0.1, 5: 0.1 * 0.5 ** 0.5, 10: 0.05, 25: 0.1 * 0.5 ** 2.5}),
    ({"ExponentialDecay": {"initial_learning_rate": 0.1, "decay_steps": 10,
                           "decay_rate": 0.5, "staircase": True}},
     {0: 0.1, 9: 0.1, 10: 0.05, 25: 0.025}),
    ({"InverseTimeDecay": {"initial_learning_rate": 1.0, "decay_steps": 4,
                           "decay_rate": 0.5}},
     {0: 1.0, 2: 1 / 1.25, 4: 1 / 1.5, 12: 1 / 2.5}),
    ({"InverseTimeDecay": {"initial_learning_rate": 1.0, "decay_steps": 4,
                           "decay_rate": 0.5, "staircase": True}},
     {3: 1.0, 4: 1 / 1.5, 11: 1 / 2.0}),
    ({"PiecewiseConstantDecay": {"boundaries": [100, 200], "values": [1.0, 0.5, 0.1]}},
     {0: 1.0, 100: 1.0, 101: 0.5, 200: 0.5, 201: 0.1, 10_000: 0.1}),
    ({"StepDecay": {"initial_learning_rate": 0.1, "drop_rate": 0.5, "drop_every": 10}},
     {0: 0.1, 9: 0.1, 10: 0.05, 19: 0.05, 20: 0.025, 35: 0.0125}),
    ({"StepDecay": {"initial_learning_rate": 0.2}}, {9: 0.2, 10: 0.1}),
    ({"CosineDecay": {"initial_learning_rate": 0.1, "decay_steps": 100}},
     {0: 0.1, 50: 0.05, 25: 0.1 * 0.5 * (1 + math.cos(PI / 4)), 100: 0.0, 150: 0.0}),
    ({"CosineDecay": {"initial_learning_rate": 0.1, "decay_steps": 100, "alpha": 0.2}},
     {0: 0.1, 50: 0.1 * (0.8 * 0.5 + 0.2), 100: 0.02, 1000: 0.02}),
    ({"CosineDecay": {"initial_learning_rate": 0.0, "decay_steps": 100,
                      "warmup_target": 0.1, "warmup_steps": 10}},
     {0: 0.0, 1: 0.01, 5: 0.05, 10: 0.1, 60: 0.05, 110: 0.0, 500: 0.0}),
    ({"CosineDecay": {"initial_learning_rate": 0.02, "decay_steps": 10, "alpha": 0.5,
                      "warmup_target": 0.1, "warmup_steps": 4}},
     {0: 0.02, 2: 0.06, 4: 0.1, 9: 0.1 * (0.5 * 0.5 + 0.5), 14: 0.05}),
    ({"PolynomialDecay": {"initial_learning_rate": 0.1, "decay_steps": 10}},
     {0: 0.1, 5: (0.1 - 0.0001) * 0.5 + 0.0001, 10: 0.0001, 20: 0.0001}),
    ({"PolynomialDecay": {"initial_learning_rate": 1.0, "decay_steps": 10,
                          "end_learning_rate": 0.0, "power": 2.0, "cycle": True}},
     {0: 1.0, 5: 0.25, 10: 0.0, 15: 0.25 ** 2, 20: 0.0}),
    ({"CosineDecayRestarts": {"initial_learning_rate": 1.0, "first_decay_steps": 10,
                              "t_mul": 1.0, "m_mul": 0.5}},
     {0: 1.0, 5: 0.5, 10: 0.5, 15: 0.25, 20: 0.25}),
    # t_mul 2: periods [0, 10), [10, 30), [30, 70)
    ({"CosineDecayRestarts": {"initial_learning_rate": 1.0, "first_decay_steps": 10}},
     {0: 1.0, 5: 0.5, 10: 1.0, 20: 0.5, 25: 0.5 * (1 + math.cos(PI * 0.75)), 30: 1.0}),
    ({"CosineDecayRestarts": {"initial_learning_rate": 1.0, "first_decay_steps": 10,
                              "alpha": 0.1}},
     {5: 0.9 * 0.5 + 0.1, 10: 1.0}),
]


@pytest.mark.parametrize("spec, values", CASES, ids=lambda c: str(c)[:60])
def test_values_at_chosen_steps(spec, values):
    schedule = schedules.get(spec)
    for step, want in values.items():
        got = schedule(step)
        assert isinstance(got, float)
        assert got == pytest.approx(want, rel=1e-12, abs=1e-15), f"step {step}"


@pytest.mark.parametrize("spec, values", CASES, ids=lambda c: str(c)[:60])
def test_config_round_trips(spec, values):
    cfg = config_of(schedules.get(spec))
    again = schedules.get(cfg)
    assert config_of(again) == cfg
    assert [again(s) for s in values] == [schedules.get(spec)(s) for s in values]


@pytest.mark.parametrize("spec, words", [
    ({"ExponentialDecay": {"initial_learning_rate": 0.1, "decay_steps": 0,
                           "decay_rate": 0.5}},
     "ExponentialDecay.decay_steps: expected a number > 0, got 0"),
    ({"PiecewiseConstantDecay": {"boundaries": [1, 2], "values": [0.1, 0.2]}},
     "one more value than boundaries, got 2 boundaries and 2 values"),
    ({"PiecewiseConstantDecay": {"boundaries": [5, 2], "values": [0.1, 0.2, 0.3]}},
     "expected increasing steps"),
    ({"ExponentialDecay": {"initial_learning_rate": 0.1}}, "decay_steps"),
])
def test_bad_arguments_are_config_errors(spec, words):
    with pytest.raises(ConfigError) as e:
        schedules.get(spec)
    assert words in str(e.value)


CONFIG = """\
seed: 0
data:
  train: {dataset: iris, subset: train}
  validation: {dataset: iris, subset: test}
  preprocess:
    x: [{rescale: 0.2}]
model:
  input_shape: [4]
  layers:
    - Dense: {units: 8, activation: relu}
    - Dense: {units: 3, activation: softmax}
compile:
  loss: sparse_categorical_crossentropy
  optimizer:
    SGD:
      momentum: 0.9
      nesterov: true
      lr:
        CosineDecay: {initial_learning_rate: 0.0, warmup_target: 0.1, warmup_steps: 4,
                      decay_steps: 8, alpha: 0.1}
  metrics: [accuracy]
fit:
  epochs: 4
  batch_size: 40
  steps_per_epoch: 2
"""


def test_a_schedule_as_lr_trains_end_to_end(workdir):
    path = write_config(workdir, CONFIG)
    r = CliRunner().invoke(main, ["fit", str(path), "--run-dir", str(workdir / "run")])
    assert r.exit_code == 0, r.output
    with open(workdir / "run" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    # the lr logged is the one in force at each epoch's first step: 2 steps per epoch
    schedule = schedules.get({"CosineDecay": {
        "initial_learning_rate": 0.0, "warmup_target": 0.1, "warmup_steps": 4,
        "decay_steps": 8, "alpha": 0.1}})
    want = [0.0, 0.05, 0.1, 0.1 * (0.9 * 0.5 * (1 + math.cos(PI * 2 / 8)) + 0.1)]
    assert [float(row["lr"]) for row in rows] == pytest.approx(want, rel=1e-6)
    assert want == pytest.approx([schedule(2 * e) for e in range(4)])
    resolved = yaml.safe_load((workdir / "run" / "config.yaml").read_text())
    sgd = resolved["compile"]["optimizer"]["SGD"]
    assert "lr" not in sgd
    assert sgd["learning_rate"]["CosineDecay"]["warmup_target"] == 0.1
    assert sgd["momentum"] == 0.9 and sgd["nesterov"] is True


def test_a_bad_schedule_in_a_config_exits_2_with_its_place(workdir):
    text = CONFIG.replace("decay_steps: 8", "decay_steps: -8")
    r = CliRunner().invoke(main, ["fit", str(write_config(workdir, text))])
    assert r.exit_code == 2
    assert "config.yaml:" in r.output and "decay_steps" in r.output
    assert "Traceback" not in r.output


def test_cosine_warmup_without_target_climbs_from_zero():
    """The issue's form: warm up 0 → initial_learning_rate, then cosine decay."""
    s = schedules.get({"CosineDecay": {"initial_learning_rate": 0.1, "decay_steps": 1000,
                                       "warmup_steps": 100}})
    assert s(0) == 0.0
    assert s(50) == pytest.approx(0.05)
    assert s(100) == pytest.approx(0.1)
    assert s(600) == pytest.approx(0.1 * 0.5 * (1 + np.cos(np.pi * 0.5)))
    assert s(1100) == pytest.approx(0.0, abs=1e-12)
    assert s(5000) == pytest.approx(0.0, abs=1e-12)
