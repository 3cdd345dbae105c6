"""An application as the first part of a model (transfer learning): its layers written
into the layer list, frozen by `trainable: false` or `freeze`, its weights loaded by
name, and Keras's two-step recipe (train the head, then unfreeze at a lower lr)."""

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from application_helpers import build, write_release_file
from conftest import write_config
from trainer.cli import main
from trainer.errors import ConfigError

BASE = dict(application="MobileNet", alpha=0.25, include_top=False, input_shape=[32, 32, 3])
HEAD = ["GlobalAveragePooling2D", {"Dense": {"units": 10, "activation": "softmax"}}]


def model_with(tmp_path, **entry):
    return build(tmp_path, layers=[{**BASE, "weights": None, **entry}] + HEAD)


def trainable_names(model):
    return {la.name for la in model.layers if la.trainable and la.params}


def test_frozen_base_leaves_only_the_head_trainable(tmp_path):
    model, cfg = model_with(tmp_path, trainable=False, name="base")
    trainable, frozen = model.count_params()
    assert (trainable, frozen) == (2_570, 218_544)  # Keras: MobileNet(0.25) notop 218,544
    assert trainable_names(model) == {"dense"}
    assert cfg["model"]["outputs"] == ["dense"]
    names = [la.name for la in model.layers]
    assert names[:2] == ["conv1", "conv1_bn"] and names[-3:] == ["base",
                                                                  "global_average_pooling2d",
                                                                  "dense"]


def test_freeze_until_and_patterns(tmp_path):
    model, _ = model_with(tmp_path, freeze={"until": "conv_pw_11_relu"})
    assert trainable_names(model) == {"conv_dw_12", "conv_dw_12_bn", "conv_pw_12",
                                      "conv_pw_12_bn", "conv_dw_13", "conv_dw_13_bn",
                                      "conv_pw_13", "conv_pw_13_bn", "dense"}
    model, _ = model_with(tmp_path, freeze=["conv_dw_*", "conv1*"])
    names = trainable_names(model)
    assert "conv_pw_1" in names and not any(n.startswith(("conv_dw_", "conv1")) for n in names)


def test_freeze_unknown_layer_suggests(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'conv_pw_11_relu'"):
        model_with(tmp_path, freeze={"until": "conv_pw_11_rel"})


def test_application_inside_a_functional_model(tmp_path):
    model, _ = build(tmp_path, inputs={"image": {"shape": [32, 32, 3]}},
                     layers=[{**BASE, "weights": None, "inputs": "image", "name": "base"},
                             {"GlobalMaxPooling2D": {"inputs": "base"}},
                             {"Dense": {"units": 3, "name": "out"}}], outputs=["out"])
    x = np.zeros((2, 32, 32, 3), np.float32)
    assert model.predict_on_batch([x])[0].shape == (2, 3)


def test_application_must_come_first_in_a_sequential_list(tmp_path):
    with pytest.raises(ConfigError, match="must be the first layer"):
        build(tmp_path, input_shape=[32, 32, 3],
              layers=[{"Rescaling": {"scale": 0.5}}, {**BASE, "weights": None}] + HEAD)


def _weights_of(h5, layer):
    with h5py.File(h5, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        g = root[layer]
        return [np.asarray(g[n]) for n in g.attrs["weight_names"]]


def test_keras_recipe_head_then_unfrozen_at_lower_lr(workdir):
    """Step 1 trains the head on a frozen base loaded from a release-layout file; step 2
    continues from step 1's checkpoint with the base unfrozen."""
    model, _ = model_with(workdir)
    release = workdir / "mobilenet_notop.h5"
    written = write_release_file(release, model, np.random.default_rng(0))
    config = write_config(workdir, f"""
data:
  train: {{dataset: cifar_synthetic, subset: train, n_train: 48}}
  preprocess:
    x: [{{imagenet: MobileNet}}]
    y: [{{to_categorical: {{num_classes: 10}}}}]
model:
  layers:
    - {{application: MobileNet, alpha: 0.25, include_top: false, input_shape: [32, 32, 3],
       weights: {release}, name: base, trainable: false}}
    - GlobalAveragePooling2D
    - Dense: {{units: 10, activation: softmax}}
compile: {{loss: categorical_crossentropy, optimizer: {{Adam: {{lr: 0.01}}}}}}
fit: {{epochs: 1, batch_size: 16}}
""")
    run = CliRunner().invoke
    r = run(main, ["fit", str(config), "--run-dir", str(workdir / "head")])
    assert r.exit_code == 0, r.output
    head_ckpt = workdir / "head" / "checkpoints" / "last.h5"
    np.testing.assert_array_equal(_weights_of(head_ckpt, "conv_pw_13")[0],
                                  written["conv_pw_13"][0])  # frozen: unchanged
    r = run(main, ["fit", str(config), "--run-dir", str(workdir / "all"),
                   "--set", "model.layers.0.trainable=true",
                   "--set", "model.layers.0.freeze.until=conv_pw_11_relu",
                   "--set", "compile.optimizer.Adam.lr=0.001",
                   "--set", f"model.weights={head_ckpt}"])
    assert r.exit_code == 0, r.output
    all_ckpt = workdir / "all" / "checkpoints" / "last.h5"
    assert not np.array_equal(_weights_of(all_ckpt, "conv_pw_13")[0],
                              written["conv_pw_13"][0])  # unfrozen: trained
    np.testing.assert_array_equal(_weights_of(all_ckpt, "conv_pw_1")[0],
                                  written["conv_pw_1"][0])  # still frozen
