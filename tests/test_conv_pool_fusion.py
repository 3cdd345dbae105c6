"""A Conv2D → MaxPooling2D(2×2, stride 2) pair where no backward runs: the direct
convolution's kernel writes the pooled output alone (direct_conv.forward's ``pool``,
planned by trainer/engine/fusion.py through Conv2D.pooled_step). The kernel against
the reference (float64) and bit for bit against the convolution then the pool kernel
(float32 and float64, NaN included, random shapes, strides, dilations, paddings, odd
sizes); the same bits on any thread count; the model's predictions the same bits as
the layers run one by one; where the planner fuses and where it leaves the layers."""

import numpy as np
import pytest

from conftest import write_config
from trainer.app import fit as api
from trainer.engine import fusion
from trainer.engine.kernels import conv_reference as ref
from trainer.engine.kernels import direct_conv, parallel, pool
from trainer.engine.kernels.conv import plan2d

pytestmark = pytest.mark.skipif(not direct_conv.wide_vectors(),
                                reason="the fused kernel runs with AVX-512's block only")


@pytest.fixture(autouse=True)
def restore_threads():
    before = parallel.num_threads()
    yield
    parallel.set_num_threads(before)


def case(seed, dtype=np.float64):
    """A random convolution whose output has at least 2 pooled pixels: (x, W, b,
    strides, dilation, padding, out_hw, pads)."""
    r = np.random.default_rng(seed)
    kh, kw = (int(v) for v in r.integers(1, 4, 2))
    c = int(r.integers(1, 7))
    if kh * kw * c < direct_conv.KB:
        c = -(-direct_conv.KB // (kh * kw))
    strides, dilation = (1, 1), (1, 1)
    if seed % 3 == 1:
        strides = tuple(int(v) for v in r.integers(1, 3, 2))
    elif seed % 3 == 2:
        dilation = tuple(int(v) for v in r.integers(1, 3, 2))
    padding = ["valid", "same"][seed % 2]
    f = int(r.integers(direct_conv.FB, 2 * direct_conv.FB + 8))  # overlapping blocks
    while True:
        h, w = (int(v) for v in r.integers(4, 16, 2))
        out_hw, pads = plan2d((h, w), (kh, kw), strides, dilation, padding)
        if min(out_hw) >= 1 and direct_conv.pools(out_hw) and out_hw[0] * out_hw[1] >= 8:
            break
    n = int(r.integers(1, 4))
    x = r.normal(size=(n, h, w, c)).astype(dtype)
    W = r.normal(size=(kh, kw, c, f)).astype(dtype)
    b = None if seed % 4 == 3 else r.normal(size=f).astype(dtype)
    return x, W, b, strides, dilation, padding, out_hw, pads


def two_passes(x, W, b, relu, strides, dilation, out_hw, pads):
    """The convolution's output, then the pool kernel's max (what the layers run)."""
    y = direct_conv.forward(x, W, b, relu, pads, strides, dilation, out_hw)
    return pool.max_pool(y, (2, 2), (2, 2), (out_hw[0] // 2, out_hw[1] // 2),
                         training=False)[0]


@pytest.mark.parametrize("seed", range(10))
def test_matches_reference_and_the_two_passes(seed):
    x, W, b, strides, dilation, padding, out_hw, pads = case(seed)
    hq, wq = out_hw[0] // 2, out_hw[1] // 2
    for relu in (False, True):
        got = direct_conv.forward(x, W, b, relu, pads, strides, dilation, out_hw,
                                  pool=True)
        z = ref.conv2d(x, W, b, strides, padding, dilation)
        z = np.maximum(z, 0) if relu else z
        want = z[:, :2 * hq, :2 * wq].reshape(len(x), hq, 2, wq, 2, -1).max(axis=(2, 4))
        assert got.shape == want.shape and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-11)
        np.testing.assert_array_equal(got, two_passes(x, W, b, relu, strides, dilation,
                                                      out_hw, pads))
        x32, W32 = x.astype(np.float32), W.astype(np.float32)
        b32 = None if b is None else b.astype(np.float32)
        got = direct_conv.forward(x32, W32, b32, relu, pads, strides, dilation, out_hw,
                                  pool=True)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, two_passes(x32, W32, b32, relu, strides,
                                                      dilation, out_hw, pads))


def test_nan_and_ties_as_the_pool_kernel():
    """A NaN pre-activation (kept by relu) reaches the pooled output where the pool
    kernel's first-maximum rule puts it, and relu's zeros tie: the same bits."""
    x, W, b, strides, dilation, padding, out_hw, pads = case(0, np.float32)
    x[0, :, :2, 0] = np.nan  # NaN in every window's first pixel, pooled column 0
    x[-1, -1, -1, -1] = np.nan  # and a NaN a window's maximum may skip
    b = np.full(W.shape[3], -50, np.float32)  # mostly relu's zeros: ties everywhere
    for relu in (False, True):
        got = direct_conv.forward(x, W, b, relu, pads, strides, dilation, out_hw, pool=True)
        want = two_passes(x, W, b, relu, strides, dilation, out_hw, pads)
        assert np.isnan(got).any()
        np.testing.assert_array_equal(got, want)


def test_thread_count_changes_no_number():
    x, W, b, strides, dilation, padding, out_hw, pads = case(5, np.float32)
    x = np.concatenate([x] * 7)
    outs = []
    for threads in (1, 2, 3):
        parallel.set_num_threads(threads)
        outs.append(direct_conv.forward(x, W, b, True, pads, strides, dilation, out_hw,
                                        pool=True))
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


MODEL = """\
seed: 3
data: {{train: {{dataset: iris}}}}
model:
  input_shape: [14, 13, 3]
  layers:
    - Conv2D: {{filters: 32, kernel_size: 3, padding: same, activation: relu{frozen}}}
    - Conv2D: {{filters: 33, kernel_size: 3, activation: relu{frozen}}}
    - MaxPooling2D: {{pool_size: 2}}
    - Dropout: {{rate: 0.25}}
    - Conv2D: {{filters: 40, kernel_size: 3, padding: same, activation: {act}}}
    - MaxPooling2D: {{pool_size: {pool}, padding: {padding}}}
    - Flatten
    - Dense: {{units: 4, activation: softmax}}
compile: {{loss: categorical_crossentropy, optimizer: adam}}
"""


def _model(tmp_path, frozen="", act="relu", pool=2, padding="valid"):
    tmp_path.mkdir(exist_ok=True)
    text = MODEL.format(frozen=frozen, act=act, pool=pool, padding=padding)
    model = api.build(api.load_config(write_config(tmp_path, text)))
    for layer in model.layers:  # biases away from 0: relu's zeros and ties both occur
        if "bias" in layer.params:
            layer.params["bias"][...] = np.random.default_rng(4).normal(
                0, 0.3, layer.params["bias"].shape)
    return model


def _fused_heads(model, training=False):
    groups, _ = fusion.plan(model.graph, training, model.graph._needed_nodes()[0])
    return sorted(k for k, g in groups.items() if type(model.graph.nodes[k].layer).__name__
                  == "Conv2D")


def _x(n=40):
    return np.random.default_rng(2).normal(size=(n, 14, 13, 3)).astype(np.float32)


def test_model_predictions_are_the_same_bits(tmp_path, monkeypatch):
    """Conv (12×11 output) → pool and conv (6×5, odd width) → pool: both fused; the
    predictions (blocked over threads) equal the layers' one by one."""
    model = _model(tmp_path)
    assert _fused_heads(model) == [1, 4]
    x = _x()
    fused = model.predict_on_batch([x])[0]
    monkeypatch.setattr(fusion, "_pool_group", lambda *a: None)
    assert _fused_heads(model) == []
    np.testing.assert_array_equal(model.predict_on_batch([x])[0], fused)


@pytest.mark.parametrize("change, fused", [
    ({"pool": 3}, [1]),           # a 3×3 window: the second pair stays apart
    ({"padding": "same"}, [1]),   # 6×5 'same' pads the odd width: apart
    ({"act": "tanh"}, [1, 4]),    # not the direct path: one step, the two forwards
])
def test_where_the_planner_fuses(tmp_path, change, fused, monkeypatch):
    model = _model(tmp_path, **change)
    assert _fused_heads(model) == fused
    x = _x(8)
    out = model.predict_on_batch([x])[0]
    monkeypatch.setattr(fusion, "_pool_group", lambda *a: None)
    np.testing.assert_array_equal(model.predict_on_batch([x])[0], out)


def test_training_keeps_the_layers(tmp_path):
    """Where a backward runs through a convolution (trained, or trained layers below
    it) its pair stays two layers; a frozen base's pair, whose backward never runs,
    is fused in training too, and the step trains the rest."""
    y = np.eye(4, dtype=np.float32)[np.arange(8) % 4]
    model = _model(tmp_path)
    assert _fused_heads(model, training=True) == []
    model.train_on_batch([_x(8)], [y])
    frozen = _model(tmp_path / "frozen", frozen=", trainable: false")
    assert _fused_heads(frozen, training=True) == [1]
    kept = frozen.layers[1].params["kernel"].copy()
    head = frozen.layers[-1].params["kernel"].copy()
    frozen.train_on_batch([_x(8)], [y])
    np.testing.assert_array_equal(frozen.layers[1].params["kernel"], kept)
    assert not np.array_equal(frozen.layers[-1].params["kernel"], head)


def test_a_second_reader_keeps_the_layers(tmp_path):
    """The convolution's output read by the pool and by another layer: not fused."""
    text = """\
seed: 3
data: {train: {dataset: iris}}
model:
  inputs: {image: {shape: [10, 10, 3]}}
  layers:
    - Conv2D: {name: c, filters: 32, kernel_size: 3, activation: relu, inputs: image}
    - MaxPooling2D: {name: p, pool_size: 2, inputs: c}
    - GlobalAveragePooling2D: {name: g1, inputs: p}
    - GlobalAveragePooling2D: {name: g2, inputs: c}
    - Concatenate: {name: cat, inputs: [g1, g2]}
    - Dense: {units: 2, activation: softmax}
  outputs: [dense]
compile: {loss: categorical_crossentropy, optimizer: adam}
"""
    model = api.build(api.load_config(write_config(tmp_path, text)))
    assert _fused_heads(model) == []
