"""User layers named by `module:Class` in a config (the answer to Keras's Lambda, which
a config cannot hold): built, trained, checkpointed, resumed, evaluated, summarised,
and refused with one clear message when the reference is wrong."""

import json
import sys
import textwrap

import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from gradcheck import check_layer
from trainer.cli import main
from trainer.errors import ConfigError

LAYERS = '''
import numpy as np
from trainer.engine.layer import Layer
from trainer.initializers import get as initializer


class Scale(Layer):
    """y = x * alpha, one trainable factor per feature."""

    passes_mask = True

    def __init__(self, init=1.0, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self.init = init

    def build(self, input_shape, rng):
        self.add_weight("alpha", (input_shape[-1],),
                        initializer({"constant": {"value": self.init}}), rng)
        return input_shape

    def forward(self, x, training):
        alpha = self.params["alpha"]

        def backward(dy):
            self.grads["alpha"] += (dy * x).reshape(-1, x.shape[-1]).sum(axis=0)
            return dy * alpha

        return x * alpha, backward


class NotALayer:
    pass
'''


def write_module(folder, source=LAYERS, name="my_layers"):
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    sys.modules.pop(name, None)  # each test's own file, not a cached one


def config(folder, layers, **model):
    value = {
        "name": "custom", "seed": 0,
        "data": {"train": {"dataset": "iris", "subset": "train"},
                 "validation": {"dataset": "iris", "subset": "test"},
                 "preprocess": {"y": [{"to_categorical": {"num_classes": 3}}]}},
        "model": {"input_shape": [4], "layers": layers, **model},
        "compile": {"loss": "categorical_crossentropy", "optimizer": {"Adam": {"lr": 0.05}},
                    "metrics": ["accuracy"]},
        "fit": {"epochs": 3, "batch_size": 16, "verbose": 0},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(value, sort_keys=False))
    return path


SCALE = {"layer": "my_layers:Scale", "args": {"init": 0.5}, "name": "scale"}
DENSE = [{"Dense": {"units": 8, "activation": "relu"}},
         {"Dense": {"units": 3, "activation": "softmax"}}]


def test_scale_layer_gradients_by_the_shared_helper():
    """The contract a user layer implements is the one every built-in layer is checked
    against; the shared finite-difference helper works on it unchanged."""
    ns = {}
    exec(compile(textwrap.dedent(LAYERS), "my_layers.py", "exec"), ns)  # test fixture only
    rng = np.random.default_rng(0)
    check_layer(ns["Scale"](init=0.7), rng.normal(size=(5, 3, 4)), rng)


def test_a_user_layer_trains_checkpoints_resumes_and_evaluates(tmp_path):
    write_module(tmp_path)
    cfg = config(tmp_path, [SCALE, *DENSE])
    r = CliRunner().invoke(main, ["summary", str(cfg)])
    assert r.exit_code == 0 and "scale (Scale)" in r.output, r.output
    run = tmp_path / "run"
    r = CliRunner().invoke(main, ["fit", str(cfg), "--run-dir", str(run)])
    assert r.exit_code == 0, r.output
    # its weight is saved by layer name, Keras-style, and it moved from its init
    with h5py.File(run / "checkpoints" / "last.h5") as f:
        names = []
        f.visit(names.append)
        alpha = [n for n in names if "scale" in n and n.endswith("alpha:0")]
        assert alpha, names
        value = f[alpha[0]][()]
    assert value.shape == (4,) and not np.allclose(value, 0.5)
    # the run's config keeps the entry as written
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["model"]["layers"][0] == SCALE
    # resume for more epochs, evaluate and summarise from the run folder
    r = CliRunner().invoke(main, ["fit", "--resume", str(run), "--set", "fit.epochs=4"])
    assert r.exit_code == 0, r.output
    history = (run / "history.csv").read_text().strip().splitlines()
    assert len(history) == 1 + 4
    r = CliRunner().invoke(main, ["evaluate", str(run), "--json"])
    assert r.exit_code == 0, r.output
    assert "accuracy" in json.loads(r.stdout.strip().splitlines()[-1])
    r = CliRunner().invoke(main, ["export", str(run), "--format", "keras-h5",
                                  str(tmp_path / "out.h5")])
    assert r.exit_code == 2, r.output
    assert "user layers have no Keras equivalent to write: scale (my_layers:Scale)" \
        in r.output


def test_commands_on_the_run_folder_import_from_where_the_run_began(tmp_path):
    """A real process each (nothing cached): evaluate, predict and resume find the
    module next to the config the run was started from, not in the run folder."""
    import subprocess

    write_module(tmp_path)
    cfg = config(tmp_path, [SCALE, *DENSE])
    run = tmp_path / "runs" / "one"
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((5, 4), dtype=np.float32))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    commands = [["fit", str(cfg), "--run-dir", str(run)],
                ["evaluate", str(run)],
                ["predict", str(run), "--input", str(tmp_path / "x.npy"),
                 "--output", str(tmp_path / "p.npy")],
                ["fit", "--resume", str(run), "--set", "fit.epochs=4"]]
    for args in commands:
        done = subprocess.run([sys.executable, "-m", "trainer", *args], cwd=elsewhere,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (args, done.stderr)
    assert np.load(tmp_path / "p.npy").shape == (5, 3)


def test_user_layer_in_a_functional_model_with_default_names(tmp_path):
    write_module(tmp_path)
    cfg = config(tmp_path, [
        {"layer": "my_layers:Scale", "inputs": "x"},
        {"layer": "my_layers:Scale", "inputs": "x"},
        {"Add": {"inputs": ["scale", "scale_1"]}},
        {"Dense": {"units": 3, "activation": "softmax", "name": "out"}},
    ], inputs={"x": {"shape": [4]}}, outputs=["out"])
    value = yaml.safe_load(cfg.read_text())
    del value["model"]["input_shape"]
    cfg.write_text(yaml.safe_dump(value, sort_keys=False))
    r = CliRunner().invoke(main, ["fit", str(cfg), "--run-dir", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("entry, message", [
    ({"layer": "my_layers:Missing"}, "module 'my_layers'"),
    ({"layer": "my_layers:NotALayer"}, "is not a subclass of trainer.engine.layer.Layer"),
    ({"layer": "nowhere_module:Scale"}, "cannot import 'nowhere_module'"),
    ({"layer": "my_layers:Scale", "args": {"bogus": 1}}, "unexpected keyword argument"),
])
def test_bad_user_layer_references_are_config_errors(tmp_path, entry, message):
    write_module(tmp_path)
    cfg = config(tmp_path, [entry, *DENSE])
    r = CliRunner().invoke(main, ["fit", str(cfg), "--run-dir", str(tmp_path / "run")])
    assert r.exit_code == 2, r.output
    assert message in r.output and "model.layers[0]" in r.output, r.output
    assert "Traceback" not in r.output


def test_a_user_layer_reference_must_be_module_colon_class(tmp_path):
    cfg = config(tmp_path, [{"layer": "my_layers.Scale"}, *DENSE])
    r = CliRunner().invoke(main, ["validate", str(cfg)])
    assert r.exit_code == 2 and "model.layers[0]" in r.output, r.output


def test_lambda_says_why_and_what_to_write_instead(tmp_path):
    cfg = config(tmp_path, [{"Lambda": {"function": "x * 2"}}, *DENSE])
    r = CliRunner().invoke(main, ["validate", str(cfg)])
    assert r.exit_code == 2
    assert "Lambda is not supported: a config holds no code" in r.output
    assert '{layer: "my_layers:Double"' in r.output and "config.yaml:" in r.output
    from trainer.config.families import callbacks, layers
    with pytest.raises(ConfigError, match="custom layer"):
        layers.lookup("Lambda")
    assert "LambdaCallback" in callbacks  # its functions are named: module:function


FAILING = LAYERS + '''

class Fails(Scale):
    """Raises in its 10th training step (the second epoch of iris in batches of 16)."""

    steps = 0

    def forward(self, x, training):
        if training:
            Fails.steps += 1
            if Fails.steps == 10:
                raise ValueError("my bug")
        return super().forward(x, training)
'''


def test_an_error_in_user_code_is_named_with_its_line_and_keeps_the_checkpoint(tmp_path):
    write_module(tmp_path, FAILING)
    cfg = config(tmp_path, [{"layer": "my_layers:Fails"}, *DENSE])
    run = tmp_path / "run"
    r = CliRunner().invoke(main, ["fit", str(cfg), "--run-dir", str(run)])
    assert r.exit_code == 2, r.output
    assert "user code named by the config raised ValueError: my bug" in r.output
    assert f"{tmp_path / 'my_layers.py'}:" in r.output and "Traceback" not in r.output
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "failed" and "my bug" in meta["error"]
    with h5py.File(run / "checkpoints" / "last.h5") as f:  # epoch 1's, intact
        assert json.loads(f["trainer_state"].attrs["state"])["loop"]["epoch"] == 1
