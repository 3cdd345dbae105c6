"""The config fuzzer (tests/test_fuzz_config.py) over the example configs in configs/:
a functional model with two inputs and outputs, four callbacks, a CSV source, a
schedule. Besides deleting, replacing, misspelling, adding and nesting keys it puts
huge, negative and non-finite numbers anywhere, nests beyond the depth bound, and
breaks the YAML with tags that construct Python objects and alias bombs. Every case
ends in exit 0, 2, 3 or 5 (a huge learning rate diverges) with one message, never a
traceback."""

import copy
import json
from pathlib import Path

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from test_fuzz_config import mutate
from trainer.cli import main

EXAMPLES = ["two_inputs.yaml", "digits_callbacks.yaml", "iris_csv.yaml", "moons.yaml",
            "digits_sgd_cosine.yaml"]
# quick at any size: one epoch of two batches, no gates
QUICK = ["fit.epochs=1", "fit.steps_per_epoch=2", "expect={}"]
CASES = {"tried": 0, "codes": {}, "by_config": {}}


def example(name):
    doc = yaml.safe_load((ROOT / "configs" / name).read_text())
    for split in doc["data"].values():  # data files found from the fuzz folder too
        if isinstance(split, dict) and "path" in split:
            split["path"] = str(ROOT / "configs" / split["path"])
    return doc


DOCS = {name: example(name) for name in EXAMPLES}

HOSTILE_YAML = [
    "\nextra: !!python/object/apply:os.system ['echo pwned']\n",
    "\nextra: !!python/name:builtins.eval\n",
    "\nextra: !!binary aGVsbG8=\n",
    "\nl0: &l0 [a, a, a, a, a, a, a, a, a, a]\nl1: &l1 [*l0, *l0, *l0, *l0, *l0, *l0, *l0, "
    "*l0, *l0, *l0]\nl2: &l2 [*l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1]\nl3: &l3 "
    "[*l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2]\nl4: [*l3, *l3, *l3, *l3, *l3, *l3, "
    "*l3, *l3, *l3, *l3]\n",
    "\n" + "x: " + "[" * 500 + "]" * 500 + "\n",
]


@st.composite
def mutated_example(draw):
    name = draw(st.sampled_from(EXAMPLES))
    text = mutate(draw, copy.deepcopy(DOCS[name]), extra_kinds=("huge", "huge", "deep"))
    if draw(st.integers(0, 9)) == 0:
        text += draw(st.sampled_from(HOSTILE_YAML))
    return name, text


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(case=mutated_example())
def test_mutated_example_configs_fail_cleanly(case, tmp_path_factory):
    name, text = case
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "config.yaml"
    path.write_text(text)
    args = ["fit", str(path), "--run-dir", str(folder / "run"), "-q"]
    for s in QUICK:
        args += ["--set", s]
    r = CliRunner().invoke(main, args)
    CASES["tried"] += 1
    CASES["codes"][r.exit_code] = CASES["codes"].get(r.exit_code, 0) + 1
    CASES["by_config"][name] = CASES["by_config"].get(name, 0) + 1
    assert "Traceback" not in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code in (0, 2, 3, 5), (r.exit_code, r.output, text)  # 5: a huge lr diverges
    if r.exit_code:
        assert r.output.startswith("error: "), r.output
        assert "internal error" not in r.output, (r.output, text)
    assert not Path("pwned").exists()


def test_example_fuzzer_tried_cases():
    """Record how many cases ran (printed with -s; the README notes the count)."""
    print(json.dumps({"example_fuzz_cases": CASES["tried"], "exit_codes": CASES["codes"],
                      "by_config": CASES["by_config"]}))
    assert CASES["tried"] >= 300
    assert set(CASES["by_config"]) == set(EXAMPLES)
    assert CASES["codes"].get(0, 0) > 10 and CASES["codes"].get(2, 0) > 50
