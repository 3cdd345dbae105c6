"""The user's own losses, metrics, initializers, regularizers, learning-rate schedules
and preprocessing steps, named `{family: "module:Name", args}` in a config: each one
trains, resumes bit-identically after a stop mid-epoch and evaluates; a reference or
contract that is wrong is one clear message (exit 2) naming the user's file:line."""

import json
import sys
import textwrap

import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from resume_helpers import StopAt, assert_same_run
from trainer.app import fit as api
from trainer.app.evaluate import evaluate as evaluate_run
from trainer.cli import main
from trainer.errors import InterruptedRun

PARTS = '''
import numpy as np

EPS = 1e-7


class FocalLoss:
    """Focal loss over one-hot rows: -sum(t * (1 - p)^gamma * log p)."""

    def __init__(self, gamma=2.0):
        self.gamma = gamma

    def call(self, y_true, y_pred):
        p = np.clip(y_pred, EPS, 1 - EPS)
        return -(y_true * (1 - p) ** self.gamma * np.log(p)).sum(axis=-1)

    def gradient(self, y_true, y_pred):
        p = np.clip(y_pred, EPS, 1 - EPS)
        g = self.gamma
        d = y_true * (g * (1 - p) ** (g - 1) * np.log(p) - (1 - p) ** g / p)
        return d * ((y_pred > EPS) & (y_pred < 1 - EPS))


def f1_macro(y_true, y_pred):
    """Per-sample hits (a per-sample mean metric)."""
    return (y_true.argmax(-1) == y_pred.argmax(-1)).astype(float)


class MacroF1:
    """Keras's stateful protocol: counts over the epoch, F1 averaged over classes."""

    def __init__(self, num_classes=3):
        self.num_classes = num_classes
        self.reset_state()

    def reset_state(self):
        self.tp = np.zeros(self.num_classes)
        self.fp = np.zeros(self.num_classes)
        self.fn = np.zeros(self.num_classes)

    def update_state(self, y_true, y_pred, sample_weight=None):
        t, p = y_true.argmax(-1), y_pred.argmax(-1)
        for c in range(self.num_classes):
            self.tp[c] += ((t == c) & (p == c)).sum()
            self.fp[c] += ((t != c) & (p == c)).sum()
            self.fn[c] += ((t == c) & (p != c)).sum()

    def result(self):
        d = 2 * self.tp + self.fp + self.fn
        return float(np.mean(np.where(d > 0, 2 * self.tp / np.maximum(d, 1), 0.0)))


def scaled_normal(shape, rng, dtype, scale=0.1):
    return rng.normal(0.0, scale, shape).astype(dtype)


class SquaredSum:
    def __init__(self, factor=0.01):
        self.factor = factor

    def __call__(self, w):
        return self.factor * float((w * w).sum())

    def gradient(self, w):
        return 2 * self.factor * w


def warmup(step, peak=0.05, steps=10):
    return peak * min(1.0, (step + 1) / steps)


class Center:
    """Learns the training split's mean per feature."""

    def __init__(self):
        self.mean = None

    def fit(self, x):
        self.mean = x.mean(axis=0)

    def __call__(self, x):
        return (x - self.mean).astype("float32")
'''

BROKEN = '''

def one_arg(y_true):
    return y_true


class NoGradient:
    def call(self, y_true, y_pred):
        return (y_pred ** 2).sum(-1)


class FlatGradient(FocalLoss):
    def gradient(self, y_true, y_pred):
        return super().gradient(y_true, y_pred).sum(-1)


class NanLoss(FocalLoss):
    def call(self, y_true, y_pred):
        return np.log(y_pred - 1).sum(-1)


def late_failure(y_true, y_pred):
    late_failure.calls = getattr(late_failure, "calls", 0) + 1
    if late_failure.calls == 12:  # in epoch 2 (8 steps and 2 validation batches each)
        raise ValueError("my metric bug")
    return f1_macro(y_true, y_pred)


def wrong_shape(shape, rng, dtype):
    return np.zeros(shape[:1], dtype)


def negative(step):
    return -0.1


class NoRegGradient:
    def __call__(self, w):
        return 0.0


class DropsRows(Center):
    def __call__(self, x):
        return x[:2]


class ForgetfulStep(Center):
    def fit(self, x):
        self.mean = list(x.mean(axis=0))  # a list: not stored with the run


class NanResult(MacroF1):
    def result(self):
        return float("nan")
'''


def write_module(folder, source=PARTS, name="my_parts"):
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    sys.modules.pop(name, None)  # each test's own file, not a cached one


DENSE = {"Dense": {"units": 8, "activation": "relu"}}
OUT = {"Dense": {"units": 3, "activation": "softmax"}}

#: one user component of each family, as a change to the base config
FAMILIES = {
    "loss": lambda c: c["compile"].update(
        loss={"loss": "my_parts:FocalLoss", "args": {"gamma": 2.0}}),
    "metric": lambda c: c["compile"].update(
        metrics=["accuracy", {"metric": "my_parts:f1_macro"}, {"metric": "my_parts:MacroF1"}]),
    "initializer": lambda c: c["model"]["layers"][0]["Dense"].update(
        kernel_initializer={"initializer": "my_parts:scaled_normal", "args": {"scale": 0.3}}),
    "regularizer": lambda c: c["model"]["layers"][0]["Dense"].update(
        kernel_regularizer={"regularizer": "my_parts:SquaredSum", "args": {"factor": 0.001}},
        activity_regularizer={"regularizer": "my_parts:SquaredSum",
                              "args": {"factor": 0.0001}}),
    "schedule": lambda c: c["compile"].update(
        optimizer={"Adam": {"learning_rate": {"schedule": "my_parts:warmup"}}}),
    "step": lambda c: c["data"]["preprocess"].update(x=[{"step": "my_parts:Center"}]),
}


def config(folder, *families, **changes):
    """Iris, 8 steps of 16 rows per epoch, with the families' user components."""
    value = {
        "name": "user-parts", "seed": 0,
        "data": {"train": {"dataset": "iris", "subset": "train"},
                 "validation": {"dataset": "iris", "subset": "test"},
                 "preprocess": {"y": [{"to_categorical": {"num_classes": 3}}]}},
        "model": {"input_shape": [4], "layers": [json.loads(json.dumps(DENSE)), OUT]},
        "compile": {"loss": "categorical_crossentropy",
                    "optimizer": {"Adam": {"lr": 0.05}}, "metrics": ["accuracy"]},
        "fit": {"epochs": 3, "batch_size": 16, "verbose": 0},
    }
    for family in families:
        FAMILIES[family](value)
    for key, section in changes.items():
        value[key] = section
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(value, sort_keys=False))
    return path


def last_row(run):
    lines = (run / "history.csv").read_text().strip().splitlines()
    return dict(zip(lines[0].split(","), map(float, lines[-1].split(","))))


@pytest.mark.parametrize("family", [*FAMILIES, "all"])
def test_each_family_trains_resumes_bit_identically_and_evaluates(tmp_path, family):
    write_module(tmp_path)
    path = config(tmp_path, *(FAMILIES if family == "all" else [family]))
    straight = tmp_path / "straight"
    api.fit(api.load_config(path), run_dir=straight)
    stopped = tmp_path / "stopped"
    with pytest.raises(InterruptedRun):  # step 4 of the second epoch
        api.fit(api.load_config(path), run_dir=stopped, callbacks=[StopAt(12)])
    state = json.loads(h5py.File(stopped / "checkpoints/last.h5")["trainer_state"]
                       .attrs["state"])
    assert (state["loop"]["epoch"], state["loop"]["step"]) == (1, 4)
    api.fit(api.load_run_config(stopped), resume=stopped)
    assert_same_run(straight, stopped)
    # evaluate gives what the last epoch logged for the validation split
    results = evaluate_run(stopped)
    logged = last_row(stopped)
    for name, value in results.items():
        assert value == pytest.approx(logged[f"val_{name}"], rel=1e-5), name
    # the run's config keeps each user entry as written
    resolved = (stopped / "config.yaml").read_text()
    assert family == "all" or "my_parts:" in resolved


def test_user_metrics_are_logged_by_name_monitored_templated_and_gated(tmp_path):
    write_module(tmp_path)
    path = config(tmp_path, "metric", "loss", callbacks=[
        {"ModelCheckpoint": {"filepath": "w-{epoch:02d}-{val_f1_macro:.2f}.h5",
                             "monitor": "val_macro_f1", "mode": "max",
                             "save_best_only": True}},
        {"EarlyStopping": {"monitor": "val_f1_macro", "mode": "max", "patience": 5}}],
        expect={"val_macro_f1": ">= 0.5", "f1_macro": ">= 0.5"})
    run = tmp_path / "run"
    r = CliRunner().invoke(main, ["fit", str(path), "--run-dir", str(run)])
    assert r.exit_code == 0, r.output
    header = (run / "history.csv").read_text().splitlines()[0].split(",")
    assert {"f1_macro", "macro_f1", "val_f1_macro", "val_macro_f1"} <= set(header)
    saved = [p.name for p in run.rglob("w-*.h5")]
    assert saved and all(n.startswith("w-0") and n.count(".") == 2 for n in saved), saved
    # an unmet gate on a user metric fails as any gate does
    r = CliRunner().invoke(main, ["evaluate", str(run), "--expect", "macro_f1>=1.1"])
    assert r.exit_code == 4, r.output
    # validate knows the logged names: a typo in a monitor is caught before training
    bad = config(tmp_path, "metric", callbacks=[{"EarlyStopping": {"monitor": "val_f1"}}])
    r = CliRunner().invoke(main, ["validate", str(bad)])
    assert r.exit_code == 2 and "val_f1_macro" in r.output, r.output


def test_a_user_schedule_in_learning_rate_scheduler_and_a_streaming_step(tmp_path):
    """The same schedule by epoch under LearningRateScheduler; a step that learns in
    pieces (partial_fit) from a lazy HDF5 source, its state used by evaluate."""
    source = PARTS + """

def halving(step, start=0.04):
    return start / 2 ** step


class RunningMax:
    def __init__(self):
        self.top = 0.0

    def partial_fit(self, x):
        self.top = max(self.top, float(np.abs(x).max()))

    def __call__(self, x):
        return (x / self.top).astype("float32")
"""
    write_module(tmp_path, source)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)) * 5
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"], f["y"] = x, (x[:, 0] > 0).astype(np.int64)
    path = config(tmp_path, callbacks=[
        {"LearningRateScheduler": {"schedule": {"schedule": "my_parts:halving"}}}],
        data={"train": {"path": "data.h5", "x": "x", "y": "y", "lazy": True},
              "validation": {"split": 0.25},
              "preprocess": {"x": [{"step": "my_parts:RunningMax"}],
                             "y": [{"to_categorical": {"num_classes": 3}}]}})
    run = tmp_path / "run"
    api.fit(api.load_config(path), run_dir=run)
    header, *rows = (run / "history.csv").read_text().strip().splitlines()
    lr = header.split(",").index("lr")
    assert [float(r.split(",")[lr]) for r in rows] == pytest.approx([0.04, 0.02, 0.01])
    with h5py.File(run / "checkpoints/last.h5") as f:
        names = []
        f.visit(names.append)
        top = [n for n in names if n.endswith("/top")]
        assert top and f[top[0]][()] == pytest.approx(np.abs(x[:45]).max())
    assert evaluate_run(run)["loss"] == pytest.approx(last_row(run)["val_loss"], rel=1e-5)


def test_a_function_metric_is_an_exact_weighted_mean_over_the_epoch(tmp_path):
    """Batches of unequal size and sample weights: the user metric's value is the
    weighted mean over every sample, as a built-in mean metric's."""
    from trainer.metrics import get

    write_module(tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        metric = get({"metric": "my_parts:f1_macro"})
        builtin = get("categorical_accuracy")
    finally:
        sys.path.remove(str(tmp_path))
    rng = np.random.default_rng(0)
    y = np.eye(3)[rng.integers(0, 3, 10)]
    p = rng.random((10, 3))
    w = rng.random(10)
    for m in (metric, builtin):
        m.reset()
        m.update(y[:7], p[:7], w[:7])
        m.update(y[7:], p[7:], w[7:])
    hits = (y.argmax(1) == p.argmax(1))
    assert metric.result() == pytest.approx((hits * w).sum() / w.sum(), rel=1e-12)
    assert metric.result() == pytest.approx(builtin.result(), rel=1e-12)


def test_user_loss_per_output_with_loss_and_sample_weights(tmp_path):
    """Per output in a functional model: the user loss on one output, a built-in on
    the other; the total is weighted by loss_weights as for built-in losses."""
    write_module(tmp_path)
    path = config(tmp_path, model={
        "inputs": {"x": {"shape": [4]}},
        "layers": [{"Dense": {"units": 8, "activation": "relu", "inputs": "x"}},
                   {"Dense": {"name": "a", "units": 3, "activation": "softmax",
                              "inputs": "dense"}},
                   {"Dense": {"name": "b", "units": 3, "activation": "softmax",
                              "inputs": "dense"}}],
        "outputs": ["a", "b"]},
        compile={"loss": {"a": {"loss": "my_parts:FocalLoss", "args": {"gamma": 1.0}},
                          "b": "categorical_crossentropy"},
                 "loss_weights": {"a": 2.0, "b": 0.5},
                 "metrics": {"a": [{"metric": "my_parts:f1_macro"}]},
                 "optimizer": "adam"},
        data={"train": {"path": "xy.npz", "x": "x", "y": {"a": "y", "b": "y"},
                        "sample_weight": "w"},
              "preprocess": {"y": [{"to_categorical": {"num_classes": 3}}]}})
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "xy.npz", x=rng.random((40, 4)), y=rng.integers(0, 3, 40),
             w=rng.random(40))
    cfg = api.load_config(path)
    model = api.build(cfg)
    assert model.metric_names() == ["loss", "a_loss", "b_loss", "a_f1_macro"]
    rng = np.random.default_rng(0)
    x = rng.random((6, 4)).astype(np.float32)
    y = np.eye(3)[rng.integers(0, 3, 6)].astype(np.float32)
    sw = rng.random(6)
    total, per_output = model.test_on_batch([x], [y, y], sw)
    preds = model.predict_on_batch([x])
    focal = model.outputs[0].loss.inner
    expected_a = float((focal.call(y, preds[0].astype(np.float64)) * sw).sum() / 6)
    assert per_output[0] == pytest.approx(expected_a, rel=1e-5)
    assert total == pytest.approx(2.0 * per_output[0] + 0.5 * per_output[1], rel=1e-6)
    r = CliRunner().invoke(main, ["fit", str(path), "--run-dir", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output


def test_check_loss_gradient_passes_a_right_gradient_and_names_a_wrong_one(tmp_path):
    from trainer.testing import check_loss_gradient

    namespace = {}
    exec(compile(textwrap.dedent(PARTS), "my_parts.py", "exec"), namespace)  # fixture
    rng = np.random.default_rng(0)
    y_true = np.eye(4)[rng.integers(0, 4, 5)]
    y_pred = rng.uniform(0.05, 0.95, (5, 4))
    check_loss_gradient(namespace["FocalLoss"](gamma=2.0), y_true, y_pred)

    class Halved(namespace["FocalLoss"]):
        def gradient(self, y_true, y_pred):
            return super().gradient(y_true, y_pred) / 2

    with pytest.raises(AssertionError, match="gradient of Halved"):
        check_loss_gradient(Halved(), y_true, y_pred)
    with pytest.raises(AssertionError, match=r"gradient has shape \(5,\)"):
        check_loss_gradient(type("Flat", (namespace["FocalLoss"],), {
            "gradient": lambda self, t, p: p.sum(-1)})(), y_true, y_pred)


def test_summary_schema_and_export_show_or_take_user_components(tmp_path):
    write_module(tmp_path)
    path = config(tmp_path, *FAMILIES)
    r = CliRunner().invoke(main, ["summary", str(path)])
    assert r.exit_code == 0, r.output
    for line in ["loss focal_loss (my_parts:FocalLoss)", "metric f1_macro (my_parts:f1_macro)",
                 "metric macro_f1 (my_parts:MacroF1)",
                 "initializer dense.kernel_initializer (my_parts:scaled_normal)",
                 "regularizer dense.kernel_regularizer (my_parts:SquaredSum)",
                 "schedule optimizer.learning_rate (my_parts:warmup)",
                 "preprocessing step x.input[0] (my_parts:Center)"]:
        assert line in r.output, r.output
    r = CliRunner().invoke(main, ["schema"])
    assert '"loss": {' in r.output and "call(y_true, y_pred) -> per-sample loss" in r.output
    # a user loss, metric, initializer or regularizer is not needed for inference:
    # the model exports; the user's initializer is written as a Keras custom object
    run = tmp_path / "run"
    assert CliRunner().invoke(main, ["fit", str(path), "--run-dir", str(run)]).exit_code == 0
    out = tmp_path / "model.json"
    r = CliRunner().invoke(main, ["export", str(run), "--format", "keras-json", str(out)])
    assert r.exit_code == 0, r.output
    dense = json.loads(out.read_text())["config"]["layers"][1]["config"]
    assert dense["kernel_initializer"] == {"class_name": "scaled_normal",
                                           "config": {"scale": 0.3}}


def test_schema_and_registries_agree_on_the_user_code_form():
    from trainer.config import families as registries
    from trainer.config.schema import USER_CODE_FORMS, config_schema

    defs = config_schema()["$defs"]
    families = {kind: r for kind, r in registries.ALL.items() if r.user_key}
    assert set(families) == set(USER_CODE_FORMS) == {
        "loss", "metric", "initializer", "regularizer", "schedule", "preprocessing step"}
    for kind, registry in families.items():
        forms = [alt for alt in defs[kind]["anyOf"] if alt.get("x-user-code") == kind]
        assert len(forms) == 1, kind
        assert forms[0]["required"] == [registry.user_key]
        assert set(forms[0]["properties"]) == {registry.user_key, "args"}
        adapter = __import__(registry.user_adapter, fromlist=["wrap"])
        assert callable(adapter.wrap), registry.user_adapter


def fails(tmp_path, command, *families, source=PARTS + BROKEN, **changes):
    write_module(tmp_path, source)
    path = config(tmp_path, *families, **changes)
    args = [command, str(path)] + (["--run-dir", str(tmp_path / "run")]
                                   if command == "fit" else [])
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    return r.output


def test_a_wrong_signature_is_refused_by_validate(tmp_path):
    out = fails(tmp_path, "validate",
                compile={"loss": "categorical_crossentropy",
                         "metrics": [{"metric": "my_parts:one_arg"}]})
    assert "my_parts:one_arg: a metric function must take (y_true, y_pred), its " \
           "signature is (y_true)" in out, out
    assert f"{tmp_path / 'my_parts.py'}:" in out and "compile.metrics" in out


def test_a_missing_gradient_says_there_is_no_autograd(tmp_path):
    out = fails(tmp_path, "validate", compile={"loss": {"loss": "my_parts:NoGradient"}})
    assert "my_parts:NoGradient: NoGradient has no gradient() method" in out, out
    assert "the engine has no autograd" in out and "compile.loss" in out


def test_a_gradient_of_the_wrong_shape_is_named(tmp_path):
    out = fails(tmp_path, "fit", compile={"loss": {"loss": "my_parts:FlatGradient"}})
    assert "my_parts:FlatGradient: gradient returned shape (16,) for y_pred of shape " \
           "(16, 3)" in out, out
    assert f"{tmp_path / 'my_parts.py'}:" in out


def test_a_nan_from_user_code_is_named_not_taken_for_divergence(tmp_path):
    out = fails(tmp_path, "fit", compile={"loss": {"loss": "my_parts:NanLoss"}})
    assert "my_parts:NanLoss: call returned NaN or Inf for finite predictions" in out, out
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["status"] == "failed" and "NanLoss" in meta["error"]


def test_an_exception_in_user_code_names_its_line_and_keeps_the_checkpoint(tmp_path):
    out = fails(tmp_path, "fit", compile={"loss": "categorical_crossentropy",
                                          "metrics": [{"metric": "my_parts:late_failure"}]})
    assert "user code named by the config raised ValueError: my metric bug" in out, out
    assert f"{tmp_path / 'my_parts.py'}:" in out
    run = tmp_path / "run"
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    with h5py.File(run / "checkpoints" / "last.h5") as f:  # epoch 1's, intact
        assert json.loads(f["trainer_state"].attrs["state"])["loop"]["epoch"] == 1


@pytest.mark.parametrize("command, change, message", [
    ("validate", ("model", "layers", 0, "Dense", "kernel_initializer",
                  {"initializer": "my_parts:wrong_shape"}),
     "my_parts:wrong_shape: returned an array of shape (4,) for a weight of shape (4, 8)"),
    ("validate", ("model", "layers", 0, "Dense", "kernel_regularizer",
                  {"regularizer": "my_parts:NoRegGradient"}),
     "NoRegGradient has no gradient() method"),
    ("validate", ("model", "layers", 0, "Dense", "kernel_regularizer",
                  {"regularizer": "my_parts:scaled_normal"}),
     "a regularizer is a class with __call__(w) and gradient(w)"),
    ("fit", ("compile", "optimizer", {"SGD": {"lr": {"schedule": "my_parts:negative"}}}),
     "my_parts:negative: returned lr -0.1 at step 0"),
    ("fit", ("data", "preprocess", "x", [{"step": "my_parts:DropsRows"}]),
     "my_parts:DropsRows: returned shape (2, 4) for 120 rows"),
    ("fit", ("data", "preprocess", "x", [{"step": "my_parts:ForgetfulStep"}]),
     "my_parts:ForgetfulStep: learnt nothing that can be stored with the run"),
    ("fit", ("compile", "metrics", [{"metric": "my_parts:NanResult"}]),
     "my_parts:NanResult: result() returned nan"),
    ("validate", ("compile", "metrics", [{"metric": "my_parts:f1_macr"}]),
     "module 'my_parts'"),
    ("validate", ("compile", "loss", {"loss": "nowhere_module:Focal"}),
     "cannot import 'nowhere_module'"),
    ("validate", ("compile", "loss", {"loss": "my_parts:FocalLoss", "args": {"alpha": 1}}),
     "unexpected keyword argument 'alpha'"),
    ("validate", ("data", "preprocess", "x", [{"step": "my_parts:Center", "arg": {}}]),
     "unknown key 'arg'"),
    ("validate", ("compile", "loss", {"loss": "my_parts.FocalLoss"}), "compile.loss"),
])
def test_broken_user_components_are_one_clear_message(tmp_path, command, change, message):
    write_module(tmp_path, PARTS + BROKEN)
    path = config(tmp_path)
    value = yaml.safe_load(path.read_text())
    *keys, last, new = change
    node = value
    for k in keys:
        node = node[k]
    node[last] = new
    path.write_text(yaml.safe_dump(value, sort_keys=False))
    args = [command, str(path)] + (["--run-dir", str(tmp_path / "run")]
                                   if command == "fit" else [])
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    assert message in r.output, r.output
    assert "Traceback" not in r.output, r.output
    assert "config.yaml:" in r.output or f"{tmp_path / 'my_parts.py'}:" in r.output, r.output


def test_commands_on_the_run_folder_import_from_where_the_run_began(tmp_path):
    """A real process each: evaluate, predict and resume of a run with a user step
    (its learnt mean from the checkpoint) and a user loss, run from another folder."""
    import subprocess

    write_module(tmp_path)
    path = config(tmp_path, "step", "loss", "metric")
    run = tmp_path / "runs" / "one"
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((5, 4), dtype=np.float32))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for args in (["fit", str(path), "--run-dir", str(run)], ["evaluate", str(run)],
                 ["predict", str(run), "--input", str(tmp_path / "x.npy"),
                  "--output", str(tmp_path / "p.npy")],
                 ["fit", "--resume", str(run), "--set", "fit.epochs=4"]):
        done = subprocess.run([sys.executable, "-m", "trainer", *args], cwd=elsewhere,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (args, done.stderr)
    assert np.load(tmp_path / "p.npy").shape == (5, 3)


def test_the_readme_focal_loss_and_its_check_run_as_written(tmp_path):
    """The README's example module, run as a script (its check), then named by a config."""
    import re
    import subprocess

    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S)
                 if "class FocalLoss" in b and "check_loss_gradient" in b)
    write_module(tmp_path, block, name="my_losses")
    done = subprocess.run([sys.executable, str(tmp_path / "my_losses.py")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    path = config(tmp_path, compile={"loss": {"loss": "my_losses:FocalLoss",
                                              "args": {"gamma": 2.0}},
                                     "optimizer": {"Adam": {"lr": 0.05}}})
    r = CliRunner().invoke(main, ["fit", str(path), "--run-dir", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert last_row(tmp_path / "run")["loss"] < 0.2


def test_user_loss_and_regularizers_in_the_whole_model_gradient(tmp_path):
    """Model.compute_gradients with a user loss, a user weight penalty and a user
    activity penalty, against finite differences of the total loss (float64)."""
    from gradcheck import check_model

    write_module(tmp_path)
    path = config(tmp_path, "loss", "regularizer")
    value = yaml.safe_load(path.read_text())
    value["model"]["layers"][0]["Dense"]["activation"] = "tanh"  # no kink
    path.write_text(yaml.safe_dump(value, sort_keys=False))
    model = api.build(api.load_config(path))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 4))
    y = np.eye(3)[rng.integers(0, 3, 5)]
    check_model(model, [x], [y])


def test_a_sparse_user_loss_gets_class_ids_and_sparse_accuracy(tmp_path):
    source = PARTS + '''

class SparseCE:
    """Cross-entropy over class ids: labels = "sparse" hands them over as given."""

    labels = "sparse"

    def call(self, y_true, y_pred):
        ids = np.asarray(y_true).reshape(-1).astype(int)
        return -np.log(np.clip(y_pred[np.arange(len(ids)), ids], EPS, 1.0))

    def gradient(self, y_true, y_pred):
        ids = np.asarray(y_true).reshape(-1).astype(int)
        grad = np.zeros_like(y_pred)
        p = y_pred[np.arange(len(ids)), ids]
        grad[np.arange(len(ids)), ids] = np.where(p > EPS, -1.0 / np.clip(p, EPS, 1.0), 0.0)
        return grad
'''
    write_module(tmp_path, source)
    path = config(tmp_path, compile={"loss": {"loss": "my_parts:SparseCE"},
                                     "optimizer": {"Adam": {"lr": 0.05}},
                                     "metrics": ["accuracy"]},
                  data={"train": {"dataset": "iris", "subset": "train"},
                        "validation": {"dataset": "iris", "subset": "test"}})
    model = api.build(api.load_config(path))
    assert type(model.outputs[0].metrics[0]).__name__ == "SparseCategoricalAccuracy"
    run = tmp_path / "run"
    r = CliRunner().invoke(main, ["fit", str(path), "--run-dir", str(run)])
    assert r.exit_code == 0, r.output
    assert last_row(run)["val_accuracy"] > 0.6


def test_a_misspelt_builtin_is_still_reported_as_one_beside_the_user_code_form(tmp_path):
    """With the {family: "module:Name"} form in the schema, {glorot_unifrm: {}} is
    still an unknown initializer with a suggestion, not a user entry missing its key."""
    value = yaml.safe_load(config(tmp_path).read_text())
    value["model"]["layers"][0]["Dense"]["kernel_initializer"] = {"glorot_unifrm": {}}
    value["compile"]["optimizer"] = {"Adam": {"learning_rate": {"CosineDecy": {}}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(value, sort_keys=False))
    r = CliRunner().invoke(main, ["validate", str(tmp_path / "config.yaml")])
    assert r.exit_code == 2
    assert "unknown initializer 'glorot_unifrm'. Did you mean 'glorot_uniform'?" in r.output
    assert "unknown schedule 'CosineDecy'. Did you mean 'CosineDecay'?" in r.output, r.output
    assert "is required" not in r.output, r.output
