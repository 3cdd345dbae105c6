"""A convolution with a linear activation: its backward keeps no copy of its output
(only the output's shape is needed) and reads the output gradient as it is; its
gradients match the float64 reference by finite differences, on one and two threads."""

import numpy as np
import pytest

from trainer.config.families import layers
from trainer.engine.kernels import conv_reference as ref
from trainer.engine.kernels import parallel
from trainer.testing import assert_close, numeric_gradient


@pytest.fixture(autouse=True)
def restore_threads():
    before = parallel.num_threads()
    yield
    parallel.set_num_threads(before)


def _layer(cls, x, filters, dtype=np.float64, **args):
    layer = layers.get({cls: {"filters": filters, **args}})
    layer.dtype = dtype
    layer.build(x.shape[1:], np.random.default_rng(0))
    layer.cast(dtype)
    return layer


@pytest.mark.parametrize("cls,shape,args", [
    ("Conv2D", (2, 5, 6, 3), {"kernel_size": 3, "padding": "same"}),
    ("Conv2D", (2, 5, 6, 3), {"kernel_size": 1}),  # pointwise
    ("Conv2D", (2, 7, 6, 3), {"kernel_size": 3, "strides": 2}),  # col2im
    ("Conv1D", (2, 7, 3), {"kernel_size": 3, "padding": "causal"}),
])
def test_linear_conv_backward_keeps_no_output(cls, shape, args):
    x = np.random.default_rng(1).normal(size=shape)
    layer = _layer(cls, x, 4, **args)
    y, back = layer.forward(x, True)
    kept = [c.cell_contents for c in back.__closure__ or ()
            if isinstance(c.cell_contents, np.ndarray)]
    assert not any(a.shape == y.shape or np.may_share_memory(a, y) for a in kept), (
        "the backward closure keeps the layer's output")
    dy = np.random.default_rng(2).normal(size=y.shape)
    dy_before = dy.copy()
    back(dy)
    np.testing.assert_array_equal(dy, dy_before)  # read, not written


@pytest.mark.parametrize("args", [{"kernel_size": 3, "padding": "same"},
                                  {"kernel_size": 1},
                                  {"kernel_size": 3, "strides": 2}])
def test_linear_conv_gradients_match_reference(args):
    r = np.random.default_rng(3)
    x = r.normal(size=(2, 5, 6, 3))
    layer = _layer("Conv2D", x, 4, **args)
    W, b = layer.params["kernel"], layer.params["bias"]
    strides = (args.get("strides", 1),) * 2
    padding = args.get("padding", "valid")

    def loss():
        return float((ref.conv2d(x, W, b, strides, padding) * dy).sum())

    y, back = layer.forward(x, True)
    np.testing.assert_allclose(y, ref.conv2d(x, W, b, strides, padding), rtol=1e-12,
                               atol=1e-12)
    dy = r.normal(size=y.shape)
    layer.zero_grads()
    dx = back(dy)
    assert_close("x", dx, numeric_gradient(loss, x), 1e-6, 1e-7)
    assert_close("kernel", layer.grads["kernel"], numeric_gradient(loss, W), 1e-6, 1e-7)
    assert_close("bias", layer.grads["bias"], numeric_gradient(loss, b), 1e-6, 1e-7)


def test_linear_conv_same_bits_on_one_and_two_threads():
    r = np.random.default_rng(4)
    x = r.normal(size=(13, 9, 8, 3)).astype(np.float32)
    runs = []
    for threads in (1, 2):
        parallel.set_num_threads(threads)
        layer = _layer("Conv2D", x, 5, np.float32, kernel_size=3, padding="same")
        y, back = layer.forward(x, True)
        dx = back(np.random.default_rng(5).normal(size=y.shape).astype(np.float32))
        runs.append((y, dx, layer.grads["kernel"].copy(), layer.grads["bias"].copy()))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_normalization_relu_chain_backward_is_dy_times_mask():
    """fusion's normalization → relu chain: its backward hands the normalization
    dy·(y > 0) bit for bit (NaN gradients kept where y > 0, and times 0 elsewhere as
    NumPy's), on arrays past the size where the one-pass kernel takes over."""
    from trainer.engine import fusion

    class Identity:
        def forward(self, x, training):
            return x.copy(), lambda d: d

    r = np.random.default_rng(6)
    x = r.normal(size=(4, 40, 40, 8)).astype(np.float32)
    y, back = fusion._norm_run(Identity(), ("relu",))(x, None, True)
    dy = r.normal(size=y.shape).astype(np.float32)
    dy.reshape(-1)[::97] = np.nan
    dx, d_other = back(dy)
    assert d_other is None
    expect = dy * (np.maximum(x, 0) > 0)
    np.testing.assert_array_equal(dx.view(np.int32), expect.view(np.int32))
