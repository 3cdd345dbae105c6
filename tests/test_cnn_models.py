"""CNN layers inside whole models: config → fit → checkpoint, and build-time errors."""

import h5py
import numpy as np
from click.testing import CliRunner

from conftest import write_config
from trainer.cli import main

CNN = """
name: small-cnn
data:
  train: {dataset: digits, subset: train}
  validation: {dataset: digits, subset: test}
  preprocess:
    x: [{rescale: 0.0625}]
    y: [{to_categorical: {num_classes: 10}}]
model:
  input_shape: [8, 8]
  layers:
    - Reshape: {target_shape: [8, 8, 1]}
    - Conv2D: {filters: 8, kernel_size: 3, padding: same}
    - BatchNormalization
    - LeakyReLU
    - SeparableConv2D: {filters: 8, kernel_size: 3, activation: elu}
    - MaxPooling2D
    - GlobalAveragePooling2D
    - Dense: {units: 10, activation: softmax}
compile:
  loss: categorical_crossentropy
  optimizer: adam
  metrics: [accuracy]
fit: {epochs: 1, batch_size: 64}
"""


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cnn_with_batchnorm_trains_and_checkpoints_moving_statistics(workdir):
    path = write_config(workdir, CNN)
    r = run("fit", path, "--run-dir", workdir / "r")
    assert r.exit_code == 0, r.output
    with h5py.File(workdir / "r" / "checkpoints" / "last.h5", "r") as f:
        names = [n.decode() for n in f["batch_normalization"].attrs["weight_names"]]
        assert names == [f"batch_normalization/{w}:0" for w in
                         ("gamma", "beta", "moving_mean", "moving_variance")]
        moving = f["batch_normalization/batch_normalization/moving_mean:0"][()]
        assert moving.shape == (8,) and np.abs(moving).max() > 0  # updated by training
        assert f["separable_conv2d"].attrs["weight_names"].tolist() == [
            b"separable_conv2d/depthwise_kernel:0", b"separable_conv2d/pointwise_kernel:0",
            b"separable_conv2d/bias:0"]
    r = run("evaluate", workdir / "r", "--json")
    assert r.exit_code == 0, r.output


def test_shape_errors_name_the_layer_and_line(workdir):
    bad_kernel = CNN.replace("kernel_size: 3, padding: same}", "kernel_size: 9}")
    r = run("validate", write_config(workdir, bad_kernel, "a.yaml"))
    assert r.exit_code == 2
    assert "larger than the input" in r.output and "a.yaml:13" in r.output
    bad_reshape = CNN.replace("target_shape: [8, 8, 1]", "target_shape: [8, 7, 1]")
    r = run("validate", write_config(workdir, bad_reshape, "b.yaml"))
    assert r.exit_code == 2 and "cannot reshape" in r.output


def test_flatten_after_unknown_spatial_size_is_refused(workdir):
    text = CNN.replace("input_shape: [8, 8]", "input_shape: [null, null, 1]").replace(
        "    - Reshape: {target_shape: [8, 8, 1]}\n", "").replace(
        "    - GlobalAveragePooling2D\n", "    - Flatten\n")
    r = run("validate", write_config(workdir, text))
    assert r.exit_code == 2 and "fully known input shape" in r.output, r.output


def test_every_new_layer_round_trips_through_the_resolved_config(workdir):
    """Fit writes the resolved config (tuples and nested pairs included); it
    validates and builds again."""
    text = CNN.replace("    - BatchNormalization\n", """    - ZeroPadding2D: {padding: [[1, 0], [0, 1]]}
    - Cropping2D: {cropping: [1, 1]}
    - UpSampling2D: {size: [1, 1]}
    - BatchNormalization: {axis: [3]}
    - DepthwiseConv2D: {kernel_size: 1, depth_multiplier: 1}
    - Conv2DTranspose: {filters: 8, kernel_size: 2, padding: same}
    - AveragePooling2D: {pool_size: 1}
    - PReLU: {shared_axes: [1, 2]}
    - LayerNormalization
""")
    r = run("fit", write_config(workdir, text), "--run-dir", workdir / "r")
    assert r.exit_code == 0, r.output
    resolved = workdir / "r" / "config.yaml"
    assert "ZeroPadding2D" in resolved.read_text()
    r = run("validate", resolved)
    assert r.exit_code == 0, r.output
