import numpy as np
import pytest

from gradcheck import check_layer
from trainer.engine.kernels import conv_reference as ref
from trainer.engine.kernels.conv import col2im, im2col, out_size, pad2d, plan2d
from trainer.errors import ConfigError
from trainer.config.families import layers

NORMAL = {"random_normal": {"stddev": 0.5}}


def make(kind, **args):
    return layers.get({kind: args})


def built(layer, x):
    layer.dtype = np.float64
    layer.output_shape = layer.build(x.shape[1:], np.random.default_rng(0))
    layer.built = True
    return layer


def test_out_size_follows_tensorflow():
    assert out_size(5, 3, 1, 1, "valid") == (3, 0, 0)
    assert out_size(5, 3, 2, 1, "same") == (3, 1, 1)
    assert out_size(6, 3, 2, 1, "same") == (3, 0, 1)  # odd pad goes after
    assert out_size(7, 2, 1, 1, "same") == (7, 0, 1)
    assert out_size(7, 3, 1, 2, "valid") == (3, 0, 0)
    assert out_size(7, 3, 1, 2, "causal") == (7, 4, 0)


@pytest.mark.parametrize("seed", range(6))
def test_im2col_gemm_matches_reference_on_random_shapes(seed):
    r = np.random.default_rng(seed)
    kh, kw = r.integers(1, 4, 2)
    sh, sw = r.integers(1, 3, 2)
    dh, dw = (1, 1) if max(sh, sw) > 1 else r.integers(1, 3, 2)
    padding = ["valid", "same"][seed % 2]
    x = r.normal(size=(2, int(r.integers(6, 10)), int(r.integers(6, 10)), 3))
    W = r.normal(size=(kh, kw, 3, 4))
    b = r.normal(size=4)
    layer = built(make("Conv2D", filters=4, kernel_size=[int(kh), int(kw)],
                       strides=[int(sh), int(sw)], dilation_rate=[int(dh), int(dw)],
                       padding=padding), x)
    layer.cast(np.float64)
    layer.set_weights([W, b])
    y, _ = layer.forward(x, True)
    np.testing.assert_allclose(y, ref.conv2d(x, W, b, (sh, sw), padding, (dh, dw)), atol=1e-10)


def test_col2im_is_the_adjoint_of_im2col(rng):
    x = rng.normal(size=(2, 7, 8, 3))
    (ho, wo), pads = plan2d((7, 8), (3, 2), (2, 1), (1, 2), "same")
    xp = pad2d(x, pads)
    cols = im2col(xp, (3, 2), (2, 1), (1, 2), (ho, wo))
    g = rng.normal(size=cols.shape)
    back = col2im(g, xp.shape, (3, 2), (2, 1), (1, 2), (ho, wo))
    np.testing.assert_allclose((cols * g).sum(), (xp * back).sum())


@pytest.mark.parametrize("args", [
    {"kernel_size": 3},
    {"kernel_size": 3, "padding": "same", "activation": "tanh"},
    {"kernel_size": [2, 3], "strides": 2, "padding": "same"},  # odd pads
    {"kernel_size": 2, "dilation_rate": 2, "padding": "same", "use_bias": False},
    {"kernel_size": 1},
])
def test_conv2d_gradients(rng, args):
    x = rng.normal(size=(2, 6, 5, 2))
    check_layer(make("Conv2D", filters=3, kernel_initializer=NORMAL,
                     bias_initializer={"constant": 0.1}, **args), x)


def test_conv2d_relu_gradient_away_from_kink(rng):
    x = rng.normal(size=(2, 5, 5, 2))
    layer = make("Conv2D", filters=2, kernel_size=3, activation="relu", padding="same",
                 kernel_initializer=NORMAL, bias_initializer={"constant": 0.05})
    y = check_layer(layer, x, h=1e-7)
    assert (y >= 0).all()


@pytest.mark.parametrize("padding,strides,dilation", [
    ("valid", 1, 1), ("same", 2, 1), ("causal", 1, 2), ("same", 1, 3)])
def test_conv1d_matches_conv2d_and_gradients(rng, padding, strides, dilation):
    x = rng.normal(size=(2, 9, 3))
    layer = make("Conv1D", filters=4, kernel_size=3, strides=strides, padding=padding,
                 dilation_rate=dilation, kernel_initializer=NORMAL)
    y = check_layer(layer, x)
    W, b = layer.params["kernel"], layer.params["bias"]
    assert W.shape == (3, 3, 4)
    if padding != "causal":
        expect = ref.conv2d(x[:, None], W[None], b, (1, strides), padding, (1, dilation))[:, 0]
    else:
        xp = np.concatenate([np.zeros((2, 2 * dilation, 3)), x], axis=1)
        expect = ref.conv2d(xp[:, None], W[None], b, (1, 1), "valid", (1, dilation))[:, 0]
    np.testing.assert_allclose(y, expect, atol=1e-10)


@pytest.mark.parametrize("args", [
    {"kernel_size": 3}, {"kernel_size": 3, "strides": 2, "padding": "same",
                         "depth_multiplier": 2},
    {"kernel_size": 2, "dilation_rate": 2, "padding": "same"}])
def test_depthwise_matches_reference_and_gradients(rng, args):
    x = rng.normal(size=(2, 6, 7, 3))
    layer = make("DepthwiseConv2D", depthwise_initializer=NORMAL,
                 bias_initializer={"constant": 0.1}, **args)
    y = check_layer(layer, x)
    K, b = layer.params["depthwise_kernel"], layer.params["bias"]
    d = args.get("dilation_rate", 1)
    s = args.get("strides", 1)
    expect = ref.depthwise2d(x, K, (s, s), args.get("padding", "valid"), (d, d)) + b
    np.testing.assert_allclose(y, expect, atol=1e-10)


def test_separable_matches_depthwise_then_pointwise(rng):
    x = rng.normal(size=(2, 6, 6, 3))
    layer = make("SeparableConv2D", filters=4, kernel_size=3, padding="same",
                 depth_multiplier=2, activation="sigmoid", depthwise_initializer=NORMAL,
                 pointwise_initializer=NORMAL)
    y = check_layer(layer, x)
    assert layer.weight_names() == ["depthwise_kernel", "pointwise_kernel", "bias"]
    assert layer.params["pointwise_kernel"].shape == (1, 1, 6, 4)
    mid = ref.depthwise2d(x, layer.params["depthwise_kernel"], (1, 1), "same")
    z = ref.conv2d(mid, layer.params["pointwise_kernel"], layer.params["bias"])
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-z)), atol=1e-10)


@pytest.mark.parametrize("kernel,strides,padding,out", [
    (3, 1, "valid", (7, 6)), (3, 2, "valid", (11, 9)), (3, 2, "same", (10, 8)),
    (2, 2, "same", (10, 8)), (1, 2, "same", (10, 8)), (4, 3, "same", (15, 12)),
    (1, 2, "valid", (10, 8))])
def test_conv2d_transpose_shapes_reference_and_gradients(rng, kernel, strides, padding, out):
    x = rng.normal(size=(2, 5, 4, 3))
    layer = make("Conv2DTranspose", filters=2, kernel_size=kernel, strides=strides,
                 padding=padding, kernel_initializer=NORMAL, bias_initializer={"constant": 0.2})
    y = check_layer(layer, x)
    assert y.shape == (2, *out, 2) and layer.params["kernel"].shape == (kernel, kernel, 2, 3)
    expect = ref.conv2d_transpose(x, layer.params["kernel"], (strides, strides), padding, out)
    np.testing.assert_allclose(y, expect + layer.params["bias"], atol=1e-10)


def test_conv2d_transpose_is_the_adjoint_of_conv2d(rng):
    """<conv(a), b> == <a, conv_transpose(b)> with the same kernel."""
    a, W = rng.normal(size=(1, 8, 8, 2)), rng.normal(size=(3, 3, 2, 4))
    conv = ref.conv2d(a, W, None, (2, 2), "same")
    b = rng.normal(size=conv.shape)
    layer = built(make("Conv2DTranspose", filters=2, kernel_size=3, strides=2,
                       padding="same", use_bias=False), b)
    layer.cast(np.float64)
    layer.set_weights([W])
    back, _ = layer.forward(b, False)
    assert back.shape == a.shape
    np.testing.assert_allclose((conv * b).sum(), (a * back).sum())


@pytest.mark.parametrize("name,args,shape,message", [
    ("Conv2D", {"filters": 2, "kernel_size": 5}, (3, 3, 1), "larger than the input"),
    ("Conv2D", {"filters": 2, "kernel_size": 3, "dilation_rate": 3}, (6, 6, 1), "dilated"),
    ("Conv2D", {"filters": 2, "kernel_size": 3}, (6, 6), "rank 4"),
    ("Conv1D", {"filters": 2, "kernel_size": 4}, (3, 2), "larger than the input"),
    ("DepthwiseConv2D", {"kernel_size": 4}, (3, 8, 1), "larger than the input"),
])
def test_shape_errors(name, args, shape, message):
    layer = make(name, name="c1", **args)
    with pytest.raises(ConfigError, match=message) as info:
        layer.build(shape, np.random.default_rng(0))
    assert "c1" in str(info.value)


def test_argument_errors():
    with pytest.raises(ConfigError, match="kernel_size"):
        make("Conv2D", filters=2, kernel_size=[3, 3, 3])
    with pytest.raises(ConfigError, match="channels_last"):
        make("Conv2D", filters=2, kernel_size=3, data_format="channels_first")
    with pytest.raises(ConfigError, match="dilation"):
        make("Conv2D", filters=2, kernel_size=3, strides=2, dilation_rate=2)


def test_float32_by_default_and_keras_layout(rng):
    layer = make("Conv2D", filters=8, kernel_size=[3, 2])
    layer.build((10, 10, 4), rng)
    assert layer.params["kernel"].shape == (3, 2, 4, 8)
    assert layer.params["kernel"].dtype == np.float32
    y, _ = layer.forward(rng.normal(size=(2, 10, 10, 4)).astype(np.float32), False)
    assert y.dtype == np.float32 and y.shape == (2, 8, 9, 8)


def _graph(layer_list, shape, rng):
    from trainer.engine.graph import Graph
    g = Graph(["x"], [shape])
    t = 0
    for layer in layer_list:
        layer.dtype = np.float64
        t = g.add(layer, [t], rng)
    g.outputs = [t]
    return g


def test_shared_conv_reuses_buffers_safely(rng):
    """One Conv2D called twice in a graph (two lent-out buffers at once), for two
    steps: its gradient equals the sum over two separate copies of it."""
    shared = make("Conv2D", filters=2, kernel_size=3, padding="same", activation="tanh")
    first, second = (make("Conv2D", filters=2, kernel_size=3, padding="same",
                          activation="tanh") for _ in range(2))
    g_shared = _graph([shared, shared], (5, 5, 2), rng)
    g_pair = _graph([first, second], (5, 5, 2), rng)
    for layer in (first, second):
        layer.set_weights(shared.get_weights())
    for _ in range(2):
        x = rng.normal(size=(3, 5, 5, 2))
        (a,), (b,) = g_shared.forward([x], True), g_pair.forward([x], True)
        np.testing.assert_allclose(a, b)
        dy = rng.normal(size=a.shape)
        (dx_shared,), (dx_pair,) = g_shared.backward([dy]), g_pair.backward([dy])
        assert dx_shared is None and dx_pair is None  # no gradient for the graph's input
        for name in ("kernel", "bias"):
            np.testing.assert_allclose(shared.grads[name],
                                       first.grads[name] + second.grads[name])


def test_inference_forward_does_not_disturb_training_buffers(rng):
    layer = built(make("Conv2D", filters=3, kernel_size=3), rng.normal(size=(2, 6, 6, 2)))
    layer.cast(np.float64)
    x = rng.normal(size=(2, 6, 6, 2))
    y, back = layer.forward(x, True)
    layer.forward(rng.normal(size=(4, 6, 6, 2)), False)  # another batch size, in between
    layer.zero_grads()
    dx = back(np.ones_like(y))
    expect = built(make("Conv2D", filters=3, kernel_size=3), x)
    expect.cast(np.float64)
    expect.set_weights(layer.get_weights())
    _, back2 = expect.forward(x, True)
    np.testing.assert_allclose(dx, back2(np.ones_like(y)))
    np.testing.assert_allclose(layer.grads["kernel"], expect.grads["kernel"])


def test_default_layer_names_follow_keras():
    from trainer.engine.layer import snake_case
    names = ["Conv2D", "MaxPooling2D", "Conv2DTranspose", "BatchNormalization",
             "GlobalAveragePooling2D", "LeakyReLU", "SeparableConv2D"]
    assert [snake_case(n) for n in names] == [
        "conv2d", "max_pooling2d", "conv2d_transpose", "batch_normalization",
        "global_average_pooling2d", "leaky_re_lu", "separable_conv2d"]


@pytest.mark.parametrize("kind,args", [
    ("DepthwiseConv1D", {"kernel_size": 3, "strides": 2, "padding": "same",
                         "depth_multiplier": 2}),
    ("DepthwiseConv1D", {"kernel_size": 2, "dilation_rate": 2}),
    ("SeparableConv1D", {"filters": 4, "kernel_size": 3, "depth_multiplier": 2,
                         "activation": "tanh"}),
    ("SeparableConv1D", {"filters": 2, "kernel_size": 2, "strides": 2, "padding": "same"}),
    ("Conv1DTranspose", {"filters": 2, "kernel_size": 3, "strides": 2, "padding": "same"}),
    ("Conv1DTranspose", {"filters": 3, "kernel_size": 2, "dilation_rate": 2}),
])
def test_1d_layers_are_their_2d_layer_on_a_height_1_image_and_gradients_check(
        rng, kind, args):
    """Keras's 1-D shapes (kernel (k, ...), no height axis); the numbers of the 2-D
    layer with a (1, k) kernel on (N, 1, steps, C); float64 finite differences."""
    x = rng.normal(size=(2, 7, 3))
    init = {"Conv1DTranspose": {"kernel_initializer": NORMAL}}.get(
        kind, {"depthwise_initializer": NORMAL})
    one = make(kind, bias_initializer={"constant": 0.1}, **init, **args)
    y = check_layer(one, x)
    two_args = {k: ([1, v] if k in ("kernel_size", "strides", "dilation_rate") else v)
                for k, v in args.items()}
    two = built(make(kind.replace("1D", "2D"), **two_args), x[:, None])
    two.set_weights([w.reshape(two_w.shape) for w, two_w in
                     zip(one.get_weights(), two.get_weights())])
    kernels = [n for n in one.weight_names() if n != "bias"]
    assert [one.params[n].ndim for n in kernels] == [two.params[n].ndim - 1 for n in kernels]
    np.testing.assert_allclose(y, two.forward(x[:, None], False)[0][:, 0], atol=1e-12)
