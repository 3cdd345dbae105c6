"""A property-based fuzzer over configs: every mutation of a valid config ends in a
valid run (exit 0) or one clear message with exit 2 (3 for data it points at, 5 when a
huge learning rate diverges), naming a config path; never a traceback or another exit
code. Mutations: delete, replace with odd values, misspell, add, nest, huge/negative/
non-finite numbers, nesting beyond the depth bound, broken YAML."""

import copy
import json

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainer.cli import main

VALID = {
    "name": "fuzz",
    "seed": 1,
    "data": {"train": {"dataset": "iris"}, "validation": {"split": 0.2},
             "preprocess": {"y": [{"to_categorical": {"num_classes": 3}}]}},
    "model": {"input_shape": [4], "layers": [
        {"Dense": {"units": 8, "activation": "relu"}},
        {"Dropout": {"rate": 0.1}},
        {"Dense": {"units": 3, "activation": "softmax"}}]},
    "compile": {"loss": "categorical_crossentropy", "optimizer": {"Adam": {"lr": 0.01}},
                "metrics": ["accuracy"]},
    "fit": {"epochs": 1, "batch_size": 32},
}

CASES = {"tried": 0, "codes": {}}


def paths(node, prefix=()):
    """Every key path in the config."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, prefix + (i,))
    return out


def get_parent(doc, path):
    node = doc
    for p in path[:-1]:
        node = node[p]
    return node


ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
    st.text(max_size=12), st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.just("Dens"), st.just("adamm"), st.just(-1), st.just(0), st.just(10**12),
    st.recursive(st.integers(), lambda c: st.lists(c, max_size=2) | st.dictionaries(
        st.just("a"), c, max_size=1), max_leaves=30),
)


@st.composite
def mutated(draw):
    return mutate(draw, copy.deepcopy(VALID), extra_kinds=("huge", "deep"))


def mutate(draw, doc, extra_kinds=()):
    """1-3 random changes to ``doc``, then (1 time in 10) broken YAML."""
    for _ in range(draw(st.integers(1, 3))):
        all_paths = [p for p in paths(doc) if p]
        if not all_paths:
            break
        path = draw(st.sampled_from(all_paths))
        parent = get_parent(doc, path)
        kind = draw(st.sampled_from(["delete", "replace", "misspell", "add", "nest",
                                     *extra_kinds]))
        key = path[-1]
        if kind == "delete":
            del parent[key]
        elif kind == "replace":
            parent[key] = draw(ODD_VALUES)
        elif kind == "misspell" and isinstance(parent, dict) and isinstance(key, str):
            parent[key[:-1] + draw(st.sampled_from("xyz_")) if len(key) > 1 else "q"] = \
                parent.pop(key)
        elif kind == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(ODD_VALUES)
        elif kind == "nest":
            value = parent[key]
            for _ in range(draw(st.integers(1, 40))):
                value = {"x": value}
            parent[key] = value
        elif kind == "huge":  # sizes, rates and counts far out of range
            parent[key] = draw(HUGE)
        elif kind == "deep":  # beyond the nesting bound, lists or mappings
            value = parent[key]
            for _ in range(draw(st.integers(50, 300))):
                value = [value] if draw(st.booleans()) else {"x": value}
            parent[key] = value
    text = yaml.safe_dump(doc, sort_keys=False)
    if draw(st.integers(0, 9)) == 0:  # break the YAML itself
        cut = draw(st.integers(0, max(0, len(text) - 1)))
        text = text[:cut] + draw(st.sampled_from(["[", "{", ": :", "\t", "'", "- -\n  x"])) + \
            text[cut:]
    return text


HUGE = st.sampled_from([10**9, 2**31, 2**63, 10**30, 10**300, 1e308, float("inf"), -1, -7,
                        -10**6, -1e308, 0, 0.0, -0.0, 1e-320])


def fit_ends_cleanly(text, folder):
    """``trainer fit`` on ``text``: exit 0, or 2/3/5 with a message — never a traceback
    or an internal error. Returns the click result."""
    path = folder / "config.yaml"
    path.write_text(text)
    r = CliRunner().invoke(main, ["fit", str(path), "--set", "fit.epochs=1", "--run-dir",
                                  str(folder / "run"), "-q"])
    assert "Traceback" not in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code in (0, 2, 3, 5), (r.exit_code, r.output, text)  # 5: a huge lr diverges
    if r.exit_code:
        assert "internal error" not in r.output, (r.output, text)
    return r


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(text=mutated())
def test_mutated_configs_fail_cleanly(text, tmp_path_factory):
    r = fit_ends_cleanly(text, tmp_path_factory.mktemp("fuzz"))
    CASES["tried"] += 1
    CASES["codes"][r.exit_code] = CASES["codes"].get(r.exit_code, 0) + 1
    if r.exit_code:
        assert r.output.startswith("error: "), r.output
        if r.exit_code == 2:
            assert "config.yaml" in r.output or "--set" in r.output, (r.output, text)


def test_fuzzer_tried_cases():
    """Record how many cases the fuzzer ran (printed with -s; README notes the count)."""
    print(json.dumps({"fuzz_cases": CASES["tried"], "exit_codes": CASES["codes"]}))
    assert CASES["tried"] >= 150
    assert CASES["codes"].get(2, 0) > 30  # the mutations do hit the checks


SEQUENCE = {
    "name": "fuzz_seq",
    "seed": 1,
    "data": {"train": {"dataset": "token_topics", "subset": "train", "n": 64},
             "validation": {"split": 0.25}},
    "model": {"inputs": {"tokens": {"shape": [40]}}, "layers": [
        {"Embedding": {"name": "emb", "input_dim": 50, "output_dim": 8, "mask_zero": True,
                       "inputs": "tokens"}},
        {"MultiHeadAttention": {"name": "mha", "num_heads": 2, "key_dim": 4,
                                "dropout": 0.1, "activity_regularizer": {"l2": 0.01}}},
        {"Attention": {"name": "att", "use_scale": True, "inputs": ["mha", "emb"]}},
        {"ActivityRegularization": {"name": "reg", "l1": 0.001}},
        {"GlobalAveragePooling1D": {"name": "pool"}},
        {"Dense": {"name": "topic", "units": 4, "activation": "softmax"}}],
        "outputs": ["topic"]},
    "compile": {"loss": "sparse_categorical_crossentropy", "optimizer": "adam",
                "metrics": ["accuracy"]},
    "fit": {"epochs": 1, "batch_size": 16},
}


@st.composite
def mutated_sequence(draw):
    return mutate(draw, copy.deepcopy(SEQUENCE), extra_kinds=("huge",))


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(text=mutated_sequence())
def test_mutated_attention_configs_fail_cleanly(text, tmp_path_factory):
    """The same contract on a graph with masks, attention and activity penalties."""
    fit_ends_cleanly(text, tmp_path_factory.mktemp("fuzzseq"))
