"""Chains of direct convolutions where no backward runs (trainer/engine/fusion.py's
conv chains, Conv2D.chain_stage, direct_conv.forward_chain): each sample through
every stage before the next sample, a 2×2 stride-2 max pool taken into its
convolution's kernel (only the pooled output written; with the AVX2 block, only the
pixels the pool reads computed, then pooled). A pooled stage against the
reference (float64) and bit for bit against the convolution then the pool kernel
(float32 and float64, NaN and ties included, random shapes, strides, dilations,
paddings, odd sizes); random chains of stages bit for bit against the stages run one
by one; the same bits on any thread count; the model's predictions the same bits as
the layers one by one; where the planner chains and where it leaves the layers."""

import numpy as np
import pytest

from conftest import write_config
from trainer.app import fit as api
from trainer.engine import fusion
from trainer.engine.kernels import conv_reference as ref
from trainer.engine.kernels import direct_conv, parallel, pool
from trainer.engine.kernels.conv import plan2d

@pytest.fixture(autouse=True, params=["avx512 block", "avx2 block"])
def block(request, monkeypatch):
    """Every test with either register block (direct_conv.wide_vectors: AVX-512's 8
    pixels, which take the pool into the kernel, or AVX2's 3, which pool a sample's
    scratch): both run on any x86 machine, compiled for its own vector width."""
    wide = request.param == "avx512 block"
    monkeypatch.setattr(direct_conv, "wide_vectors", lambda: wide)
    return wide


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


def pooled(x, W, b, relu, strides, dilation, out_hw, pads):
    """One pooled stage."""
    return direct_conv.forward_chain(x, [direct_conv.Stage(W, b, relu, pads, strides,
                                                           dilation, out_hw, True)])


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
        got = pooled(x, W, b, relu, strides, dilation, out_hw, pads)
        z = ref.conv2d(x, W, b, strides, padding, dilation)
        z = np.maximum(z, 0) if relu else z
        want = z[:, :2 * hq, :2 * wq].reshape(len(x), hq, 2, wq, 2, -1).max(axis=(2, 4))
        assert got.shape == want.shape and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-11)
        np.testing.assert_array_equal(got, two_passes(x, W, b, relu, strides, dilation,
                                                      out_hw, pads))
        x32, W32 = x.astype(np.float32), W.astype(np.float32)
        b32 = None if b is None else b.astype(np.float32)
        got = pooled(x32, W32, b32, relu, strides, dilation, out_hw, pads)
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
        got = pooled(x, W, b, relu, strides, dilation, out_hw, pads)
        want = two_passes(x, W, b, relu, strides, dilation, out_hw, pads)
        assert np.isnan(got).any()
        np.testing.assert_array_equal(got, want)


def random_chain(seed, dtype):
    """(x, stages) of 2-3 random stages, each reading the one before (some pooled,
    strided, dilated, padded or not, some without bias or relu)."""
    r = np.random.default_rng(50 + seed)
    n, h, w, c = int(r.integers(1, 4)), int(r.integers(12, 17)), int(r.integers(12, 17)), 3
    x = r.normal(size=(n, h, w, c)).astype(dtype)
    stages = []
    for i in range(int(r.integers(2, 4))):
        strides = (1, 1) if i or seed % 2 else (2, 1)
        dilation = (2, 1) if seed % 3 == 2 and i == 0 else (1, 1)
        while True:  # a stage the kernels take (≥ PB output pixels, ≥ KB taps)
            kh, kw = (int(v) for v in r.integers(1, 4, 2))
            padding = ["valid", "same"][int(r.integers(0, 2))]
            out_hw, pads = plan2d((h, w), (kh, kw), strides, dilation, padding)
            if out_hw[0] * out_hw[1] >= direct_conv.PB and kh * kw * c >= direct_conv.KB:
                break
        f = int(r.integers(direct_conv.FB, 2 * direct_conv.FB + 8))
        pool = bool(r.integers(0, 2)) and direct_conv.pools(out_hw) and (
            (out_hw[0] // 2) * (out_hw[1] // 2) >= 2 * direct_conv.PB)
        W = r.normal(size=(kh, kw, c, f)).astype(dtype) / np.sqrt(kh * kw * c)
        b = None if r.integers(0, 4) == 0 else r.normal(size=f).astype(dtype)
        stages.append(direct_conv.Stage(W, b, bool(r.integers(0, 3)), pads, strides,
                                        dilation, out_hw, pool))
        h, w, c = (out_hw[0] // 2, out_hw[1] // 2, f) if pool else (*out_hw, f)
    return x, stages


def one_by_one(x, stages):
    for st in stages:
        x = direct_conv.forward(x, st.W, st.bias, st.relu, st.pads, st.strides, st.dilation,
                                st.out_hw)
        if st.pool:
            h, w = st.out_hw
            x = pool.max_pool(x, (2, 2), (2, 2), (h // 2, w // 2), training=False)[0]
    return x


@pytest.mark.parametrize("seed", range(6))
def test_chains_match_the_stages_one_by_one(seed):
    for dtype in (np.float64, np.float32):
        x, stages = random_chain(seed, dtype)
        assert len(stages) >= 2
        got = direct_conv.forward_chain(x, stages)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, one_by_one(x, stages))


def test_thread_count_changes_no_number():
    x, stages = random_chain(1, np.float32)
    x = np.concatenate([x] * 7)
    outs = []
    for threads in (1, 2, 3):
        parallel.set_num_threads(threads)
        outs.append(direct_conv.forward_chain(x, stages))
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


def _chains(model, training=False):
    """The planned conv chains, as lists of their node indices."""
    graph = model.graph
    groups, members = fusion.plan(graph, training, graph._needed_nodes()[0])
    out = []
    for k in sorted(groups):
        if type(graph.nodes[k].layer).__name__ == "Conv2D":
            last = graph.nodes.index(graph.producer[groups[k].out])
            assert all(j in members for j in range(k + 1, last + 1))
            out.append(list(range(k, last + 1)))
    return out


def _x(n=40):
    return np.random.default_rng(2).normal(size=(n, 14, 13, 3)).astype(np.float32)


def test_model_predictions_are_the_same_bits(tmp_path, monkeypatch):
    """conv → conv (12×11 output) → pool → Dropout → conv (6×5, odd width) → pool:
    one chain; the predictions (blocked over threads) equal the layers' one by one,
    and the layers' forwards when a stage meets an input it does not take."""
    model = _model(tmp_path)
    assert _chains(model) == [[0, 1, 2, 3, 4, 5]]
    x = _x(150)
    fused = model.predict_on_batch([x])[0]
    np.testing.assert_array_equal(model.predict_on_batch([x.astype(np.float64)])[0], fused)
    parallel.set_num_threads(1 if parallel.num_threads() > 1 else 2)
    np.testing.assert_array_equal(model.predict_on_batch([x])[0], fused)
    monkeypatch.setattr(fusion, "_conv_chain", lambda *a: None)
    assert _chains(model) == []
    np.testing.assert_array_equal(model.predict_on_batch([x])[0], fused)


@pytest.mark.parametrize("change, chains", [
    ({"pool": 3}, [[0, 1, 2, 3, 4]]),     # a 3×3 window: the last pool stays apart
    ({"padding": "same"}, [[0, 1, 2, 3, 4]]),  # 6×5 'same' pads the odd width: apart
    ({"act": "tanh"}, [[0, 1, 2]]),       # not the direct path: apart
])
def test_where_the_planner_chains(tmp_path, change, chains, monkeypatch):
    model = _model(tmp_path, **change)
    assert _chains(model) == chains
    x = _x(8)
    out = model.predict_on_batch([x])[0]
    monkeypatch.setattr(fusion, "_conv_chain", lambda *a: None)
    np.testing.assert_array_equal(model.predict_on_batch([x])[0], out)


def test_training_keeps_the_layers(tmp_path):
    """Where a backward runs through a convolution (trained, or trained layers below
    it) the layers run one by one; a frozen base, whose backward never runs, chains
    in training too, and the step trains the rest."""
    y = np.eye(4, dtype=np.float32)[np.arange(8) % 4]
    model = _model(tmp_path)
    assert _chains(model, training=True) == []
    model.train_on_batch([_x(8)], [y])
    frozen = _model(tmp_path / "frozen", frozen=", trainable: false")
    assert _chains(frozen, training=True) == [[0, 1, 2]]  # Dropout drops in training
    kept = frozen.layers[1].params["kernel"].copy()
    head = frozen.layers[-1].params["kernel"].copy()
    frozen.train_on_batch([_x(8)], [y])
    np.testing.assert_array_equal(frozen.layers[1].params["kernel"], kept)
    assert not np.array_equal(frozen.layers[-1].params["kernel"], head)


def test_a_second_reader_keeps_the_layers(tmp_path):
    """The convolution's output read by the pool and by another layer: no chain."""
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
    assert _chains(model) == []


def test_blocks_count_only_what_the_chain_makes(tmp_path, monkeypatch):
    """Inference blocks are sized by the tensors made for a whole block: the chain's
    inner activations (one sample at a time) are not among them."""
    model = _model(tmp_path)
    assert model.graph.inference_shapes() == [(14, 13, 3), (3, 2, 40), (240,), (4,)]
    model.PREDICT_BLOCK_BYTES = 10 * 14 * 13 * 3 * 4  # ten input rows
    assert model.predict_block_rows() == 10
    monkeypatch.setattr(fusion, "_conv_chain", lambda *a: None)
    assert model.graph.inference_shapes() == model.graph.shapes
    assert model.predict_block_rows() == 8  # the floor: 14×13×32 floats a row


def test_unknown_image_size_keeps_the_layers(tmp_path):
    """An input of any height and width: no stage (the shapes are known only at run
    time); the model predicts as before."""
    text = """\
seed: 3
data: {train: {dataset: iris}}
model:
  input_shape: [null, null, 3]
  layers:
    - Conv2D: {filters: 32, kernel_size: 3, activation: relu}
    - Conv2D: {filters: 32, kernel_size: 3, activation: relu}
    - MaxPooling2D: {pool_size: 2}
    - GlobalAveragePooling2D
    - Dense: {units: 2, activation: softmax}
compile: {loss: categorical_crossentropy, optimizer: adam}
"""
    model = api.build(api.load_config(write_config(tmp_path, text)))
    assert _chains(model) == []
    out = model.predict_on_batch([np.random.default_rng(0).normal(size=(3, 12, 11, 3))])[0]
    assert out.shape == (3, 2) and np.allclose(out.sum(axis=1), 1, rtol=1e-5)
