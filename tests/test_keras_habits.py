"""What a Keras user writes in the first hour (issue 23): YAML 1.2 numbers, one message
per optimizer mistake, pointers for Keras names that live elsewhere, built-in dataset
shapes checked at build time."""

import pytest
from click.testing import CliRunner

from conftest import write_config
from trainer.config import loader as config
from trainer.cli import main
from trainer.errors import ConfigError

BASE = """\
data:
  train: {dataset: digits, subset: train}
  validation: {dataset: digits, subset: test}
model:
  input_shape: [8, 8]
  layers:
    - Flatten
    - Dense: {units: 10, activation: softmax}
compile:
  loss: sparse_categorical_crossentropy
  optimizer: OPTIMIZER
  metrics: [accuracy]
"""


def with_optimizer(text):
    return BASE.replace("OPTIMIZER", text)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# -- numbers --------------------------------------------------------------------

@pytest.mark.parametrize("written, value", [("1e-3", 0.001), ("1E6", 1e6), (".5", 0.5),
                                            ("-2e+3", -2000.0), ("+1e3", 1000.0),
                                            ("1.0e-6", 1e-6), ("3", 3), ("1_000.5", 1000.5)])
def test_yaml_1_2_numbers_are_floats(written, value):
    got = config.parse_text(f"a: {written}\n", "c.yaml")[0]["a"]
    assert got == value and type(got) is type(value)


def test_strings_that_only_look_like_numbers_stay_strings():
    got = config.parse_text("[1e, e3, a1e3, '1e-3', 1e-3x]", "c.yaml")[0]
    assert got == ["1e", "e3", "a1e3", "1e-3", "1e-3x"]


def test_classic_keras_sgd_line_loads_with_its_lines(tmp_path):
    path = write_config(tmp_path, with_optimizer(
        "{SGD: {lr: 0.01, decay: 1e-6, momentum: 0.9, nesterov: true}}"))
    cfg = config.load(path)
    args = cfg["compile"]["optimizer"]["SGD"]
    assert args["decay"] == 1e-6 and isinstance(args["decay"], float)
    assert cfg.where(("compile", "optimizer", "SGD", "decay")) == "config.yaml:11:38"


def test_scientific_lr_in_set_override(tmp_path):
    path = write_config(tmp_path, with_optimizer("{Adam: {lr: 0.003}}"))
    cfg = config.load(path, ["compile.optimizer.Adam.lr=1e-3"])
    assert cfg["compile"]["optimizer"]["Adam"]["lr"] == 0.001
    r = invoke("validate", path, "--set", "compile.optimizer.Adam.lr=1e-3")
    assert r.exit_code == 0, r.output


def test_strings_that_look_like_numbers_survive_the_run_folder(tmp_path, workdir):
    """config.yaml of a run is read back with the same YAML 1.2 numbers: a string such
    as the run name '1e5' is written quoted, not turned into 100000.0."""
    from trainer.app import fit as api

    path = write_config(tmp_path, 'name: "1e5"\n' + with_optimizer("adam"))
    r = invoke("fit", path, "-q", "--run-dir", workdir / "r")
    assert r.exit_code == 0, r.output
    assert api.load_run_config(workdir / "r")["name"] == "1e5"
    assert invoke("evaluate", workdir / "r", "--data", "validation").exit_code == 0
    assert config.parse_text(config.dump_text(["1e-3", 1e-3]), "x")[0] == ["1e-3", 1e-3]


# -- optimizer arguments --------------------------------------------------------

def problems(tmp_path, optimizer):
    with pytest.raises(ConfigError) as info:
        config.load(write_config(tmp_path, with_optimizer(optimizer)))
    return info.value.problems


@pytest.mark.parametrize("optimizer, expected", [
    ("{SGD: {lr: -0.5}}",
     [("compile.optimizer.SGD.lr", "expected a number > 0 or a schedule, got -0.5")]),
    ("{SGD: {learning_rate: high}}",
     [("compile.optimizer.SGD.learning_rate",
       "expected a number > 0 or a schedule, got 'high'")]),
    ("{SGD: {lr: CosineDecy}}",
     [("compile.optimizer.SGD.lr", "expected a number > 0 or a schedule, got "
                                   "'CosineDecy'. Did you mean 'CosineDecay'?")]),
    ("{SGD: {momentum: high}}",
     [("compile.optimizer.SGD.momentum", "expected a number in [0, 1], got 'high'")]),
    ("{SGD: {momentum: -0.1}}",
     [("compile.optimizer.SGD.momentum", "expected a value >= 0, got -0.1")]),
    ("{SGD: {decay: -1e-6}}",
     [("compile.optimizer.SGD.decay", "expected a value >= 0, got -1e-06")]),
    ("{Adam: {epsilon: null}}",
     [("compile.optimizer.Adam.epsilon", "expected a number >= 0, got None")]),
    ("{SGD: -0.1}",
     [("compile.optimizer.SGD", "expected a number > 0 or a schedule, got -0.1")]),
    ("{SGD: {lr: -0.5, momentum: high, decay: -1}}",
     [("compile.optimizer.SGD.momentum", "expected a number in [0, 1], got 'high'"),
      ("compile.optimizer.SGD.decay", "expected a value >= 0, got -1"),
      ("compile.optimizer.SGD.lr", "expected a number > 0 or a schedule, got -0.5")]),
])
def test_one_message_per_optimizer_mistake(tmp_path, optimizer, expected):
    got = [(path, message) for path, message, _ in problems(tmp_path, optimizer)]
    assert sorted(got) == sorted(expected)


def test_misspelt_optimizer_argument_is_named_not_a_schedule(tmp_path):
    (path, message, _), = problems(tmp_path, "{SGD: {lrr: 0.1}}")
    assert path == "compile.optimizer.SGD"
    assert message.startswith("unknown key 'lrr'. Did you mean 'lr'?")


def test_schedule_mistakes_still_reach_the_schedule(tmp_path):
    found = problems(tmp_path, "{SGD: {lr: {CosineDecay: {decay_stps: 3, "
                               "initial_learning_rate: 0.1}}}}")
    assert [(p, m.split(".")[0]) for p, m, _ in found] == [
        ("compile.optimizer.SGD.lr.CosineDecay", "unknown key 'decay_stps'"),
        ("compile.optimizer.SGD.lr.CosineDecay", "'decay_steps' is required")]


def test_negative_lr_exits_2_and_zero_lr_warns(tmp_path, workdir):
    bad = write_config(tmp_path, with_optimizer("{SGD: {lr: -0.5}}"), "bad.yaml")
    r = invoke("fit", bad, "-q")
    assert r.exit_code == 2 and "lr: expected a number > 0 or a schedule" in r.output
    zero = write_config(tmp_path, with_optimizer("{SGD: {lr: 0}}"), "zero.yaml")
    r = invoke("validate", zero)
    assert r.exit_code == 0
    assert "warning: compile.optimizer.SGD.lr: lr is 0: training will not change the " \
           "weights (zero.yaml:11:25)" in r.output
    r = invoke("fit", zero, "-q", "--run-dir", workdir / "run")
    assert r.exit_code == 0, r.output
    assert "warning: compile.optimizer.SGD.lr: lr is 0" in r.stderr


# -- Keras names that live elsewhere --------------------------------------------

@pytest.mark.parametrize("fit, hint", [
    ("{validation_split: 0.1}", "Keras's validation_split is written data.validation: "
                                "{split: 0.1} here"),
    ("{callbacks: [TerminateOnNaN]}", "is the top-level list callbacks: here"),
])
def test_keras_fit_arguments_point_to_where_they_live(tmp_path, fit, hint):
    (path, message, where), = _problems_of(tmp_path, with_optimizer("adam") + "fit: " + fit)
    assert path == "fit" and hint in message and where == "config.yaml:13:6"
    assert "Did you mean" not in message


@pytest.mark.parametrize("conv, where", [
    ("{filters: 2, kernel_size: (3, 3)}", "config.yaml:8:41"),   # split at the comma
    ("\n        filters: 2\n        kernel_size: (3, 3)", "config.yaml:10:22"),
])
def test_python_tuple_gets_write_a_list(tmp_path, conv, where):
    text = with_optimizer("adam").replace(
        "    - Flatten\n",
        f"    - Reshape: {{target_shape: [8, 8, 1]}}\n    - Conv2D: {conv}\n    - Flatten\n")
    (path, message, at), = _problems_of(tmp_path, text)
    assert path == "model.layers[1].Conv2D.kernel_size"
    assert message.endswith("(3, 3) is a Python tuple: write [3, 3]") or \
        message.endswith("got '(3, 3)' (a Python tuple: write [3, 3])")
    assert at == where


def _problems_of(tmp_path, text):
    with pytest.raises(ConfigError) as info:
        config.load(write_config(tmp_path, text))
    return info.value.problems


# -- built-in dataset shapes ----------------------------------------------------

def test_builtin_dataset_shape_mismatch_fails_at_build_time_with_the_line(tmp_path, workdir):
    path = write_config(tmp_path, with_optimizer("adam").replace("[8, 8]", "[28, 28, 1]"))
    for command in (["validate"], ["fit", "-q"]):
        r = invoke(*command, path)
        assert r.exit_code == 2, r.output
        assert "model.input_shape: the model's input 'input' takes samples of shape " \
               "[28, 28, 1], but data.train (the built-in dataset 'digits') gives samples " \
               "of shape [8, 8]" in r.output
        assert "(config.yaml:5:16)" in r.output
    assert not (workdir / "runs").exists()  # nothing trained, no run folder


def test_preprocess_reshape_is_taken_into_account(tmp_path):
    text = with_optimizer("adam").replace("[8, 8]", "[8, 8, 1]").replace(
        "model:", "  preprocess: {x: [{reshape: [8, 8, 1]}]}\nmodel:")
    assert invoke("validate", write_config(tmp_path, text)).exit_code == 0
    text = text.replace("[8, 8, 1]}]", "[64]}]")
    r = invoke("validate", write_config(tmp_path, text))
    assert r.exit_code == 2 and "gives samples of shape [64] after data.preprocess.x" in r.output


def test_every_builtin_dataset_knows_its_sample_shapes():
    from trainer.config.families import datasets

    small = {"blobs": {"n_samples": 20, "n_features": 5}, "moons": {"n_samples": 20},
             "spirals": {"n_samples": 20}, "cifar_synthetic": {"n_train": 10, "n_test": 10},
             "two_input_synthetic": {"samples": 20}, "marker_order": {"n": 20, "length": 16},
             "token_topics": {"n": 20, "length": 30}, "seq2seq_tokens": {"samples": 20}}
    from trainer.datasets.keras_base import KerasDataset

    keras = {"mnist": (28, 28), "fashion_mnist": (28, 28), "cifar10": (32, 32, 3),
             "cifar100": (32, 32, 3), "boston_housing": (13,), "imdb": None, "reuters": None}
    for name in datasets.names():
        ds = datasets.get({name: small.get(name, {})})
        if isinstance(ds, KerasDataset):  # downloaded: known without the files
            assert ds.sample_shapes() == keras[name], name
            continue
        x, _ = ds.load()
        want = {k: v.shape[1:] for k, v in x.items()} if isinstance(x, dict) else x.shape[1:]
        assert ds.sample_shapes() == want, name
