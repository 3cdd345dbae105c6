"""BatchNormalization's compiled training passes (trainer/engine/kernels/batchnorm.py):
forward and backward against plain NumPy float64 formulas, float64 finite
differences, the moving statistics, the fused relu / Add → relu chains (the same bits
as the nodes one by one), thread invariance and the batch split over ranks.

float32 tolerance: the largest error measured against the float64 formulas, relative
to the largest value of each result, was 1.2e-7 for y, dx, dgamma and dbeta (2-D to
5-D shapes, means up to 1e3 standard deviations from zero; the NumPy lines it replaces:
6e-4 for y, 4.5e-3 for dgamma there); the tests allow 1e-6."""

import gc
import threading
import weakref

import numpy as np
import pytest

from gradcheck import check_layer
from trainer.config.families import layers
from trainer.distributed import shard
from trainer.engine import fusion
from trainer.engine.kernels import batchnorm, parallel
from trainer.layers import normalization

NORMAL = {"random_normal": {"mean": 1.0, "stddev": 0.5}}
F32 = 1e-6  # float32, relative to the result's largest value (module doc)


@pytest.fixture
def compiled(monkeypatch):
    """The compiled passes for any size (they start at KERNEL_MIN values)."""
    monkeypatch.setattr(normalization, "KERNEL_MIN", 1)


def make(shape, dtype, rng, **args):
    layer = layers.get({"BatchNormalization": {"gamma_initializer": NORMAL,
                                               "beta_initializer": NORMAL, **args}})
    layer.dtype = dtype
    layer.build(shape[1:], rng)
    layer.built = True
    layer.cast(dtype)
    return layer


def reference(x, gamma, beta, eps, dy):
    """Plain float64 formulas over all axes but the last."""
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    axes = tuple(range(x.ndim - 1))
    mean, var = x.mean(axes), x.var(axes)
    inv_std = 1 / np.sqrt(var + eps)
    xhat = (x - mean) * inv_std
    dxhat = dy * gamma
    dx = (dxhat - dxhat.mean(axes) - xhat * (dxhat * xhat).mean(axes)) * inv_std
    return gamma * xhat + beta, dx, (dy * xhat).sum(axes), dy.sum(axes), mean, var


def close(got, want, rtol):
    scale = max(np.abs(want).max(), 1e-30)
    assert np.abs(got - want).max() <= rtol * scale, np.abs(got - want).max() / scale


@pytest.mark.parametrize("shape, offset", [
    ((16, 5), 0.0), ((1, 9, 7), 3.0), ((4, 6, 6, 33), -5.0), ((1, 5, 5, 1), 0.0),
    ((2, 3, 4, 5, 7), 2.0), ((3, 8, 8, 3), 1e3), ((2, 40, 40, 48), 1.0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_and_backward_match_float64_formulas(compiled, rng, shape, offset, dtype):
    x = (rng.normal(size=shape) * rng.uniform(0.5, 2, shape[-1]) + offset).astype(dtype)
    dy = rng.normal(size=shape).astype(dtype)
    layer = make(shape, dtype, rng, momentum=0.5)
    assert layer._kernel_rows(x) is not None
    y, back = layer.forward(x, True)
    layer.zero_grads()
    dx = back(dy)
    g, b = layer.params["gamma"].astype(np.float64), layer.params["beta"].astype(np.float64)
    ry, rdx, rdg, rdb, mean, var = reference(x, g, b, 1e-3, dy)
    rtol = F32 if dtype == np.float32 else 1e-12
    assert y.dtype == dx.dtype == dtype and y.shape == dx.shape == shape
    for got, want in ((y, ry), (dx, rdx), (layer.grads["gamma"], rdg),
                      (layer.grads["beta"], rdb)):
        close(got, want, rtol)
    m = x.size // shape[-1]
    unbiased = len(shape) in (4, 5) and dtype == np.float32  # tf.keras 2's fused path
    want_var = 0.5 + 0.5 * var * (m / max(m - 1, 1) if unbiased else 1)
    np.testing.assert_allclose(layer.buffers["moving_mean"], 0.5 * mean, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(layer.buffers["moving_variance"], want_var, rtol=1e-5)


@pytest.mark.parametrize("args", [{}, {"center": False}, {"scale": False},
                                  {"epsilon": 0.5}, {"axis": [-2, -1]}])
def test_gradients_by_finite_differences(compiled, rng, args):
    layer = layers.get({"BatchNormalization": {"gamma_initializer": NORMAL, **args}})
    x = rng.normal(2.0, 3.0, size=(3, 4, 5, 3))
    check_layer(layer, x)
    assert layer._kernel_rows(x) is not None


def test_big_blocks_take_the_kernel_without_help(rng):
    layer = make((8, 32, 32, 64), np.float32, rng)
    x = rng.normal(size=(8, 32, 32, 64)).astype(np.float32)
    assert x.size >= normalization.KERNEL_MIN and layer._kernel_rows(x) is not None
    assert layer._kernel_rows(np.asfortranarray(x)) is None  # not C-contiguous: NumPy
    assert make((8, 64, 32, 32), np.float32, rng, axis=1)._kernel_rows(x) is None


def test_moving_statistics_after_steps(compiled, rng):
    shape = (4, 5, 5, 6)
    layer = make(shape, np.float32, rng, momentum=0.8)
    mean, var = np.zeros(6), np.ones(6)
    m = 4 * 5 * 5
    for step in range(3):
        x = (rng.normal(size=shape) * (step + 1) + step).astype(np.float32)
        layer.forward(x, True)
        x64 = x.astype(np.float64).reshape(-1, 6)
        mean = 0.8 * mean + 0.2 * x64.mean(0)
        var = 0.8 * var + 0.2 * x64.var(0) * m / (m - 1)
    np.testing.assert_allclose(layer.buffers["moving_mean"], mean, rtol=1e-5)
    np.testing.assert_allclose(layer.buffers["moving_variance"], var, rtol=1e-5)


@pytest.mark.parametrize("epilogue", [(), ("add",)])
def test_backward_keeps_neither_the_output_nor_the_adds_operand(compiled, rng, epilogue):
    """Without a relu the backward needs only x: the output (and an Add's operand) may
    go as soon as the layers after are done with them."""
    shape = (2, 5, 5, 4)
    x = rng.normal(size=shape).astype(np.float32)
    other = rng.normal(size=shape).astype(np.float32) if epilogue else None
    layer = make(shape, np.float32, rng)
    y, back = fusion._norm_run(layer, epilogue)(x, other, True)
    gone = [weakref.ref(y if y.base is None else y.base)]
    if epilogue:
        gone.append(weakref.ref(other))
    del y, other
    gc.collect()
    assert all(ref() is None for ref in gone)
    assert back(np.ones(shape, np.float32))[0].shape == shape


@pytest.mark.parametrize("epilogue", [("relu",), ("add",), ("add", "relu")])
def test_chains_give_the_bits_of_the_nodes_one_by_one(compiled, rng, epilogue):
    shape = (2, 6, 6, 10)
    x = rng.normal(size=shape).astype(np.float32)
    x[0, 0, 0, 0] = np.nan  # NaN goes through relu, as np.maximum
    other = rng.normal(size=shape).astype(np.float32) if "add" in epilogue else None
    dy = rng.normal(size=shape).astype(np.float32)
    a, b = make(shape, np.float32, rng), make(shape, np.float32, rng)
    b.params = {k: v.copy() for k, v in a.params.items()}
    y, back = fusion._norm_run(a, epilogue)(x, other, True)
    a.zero_grads()
    dx, d_other = back(dy)
    y1, back1 = b.forward(x, True)
    want = y1 + other if "add" in epilogue else y1
    want = np.maximum(want, 0) if "relu" in epilogue else want
    b.zero_grads()
    d = dy * (want > 0) if "relu" in epilogue else dy
    np.testing.assert_array_equal(y, want)
    assert np.isnan(y[0, 0, 0, 0])
    np.testing.assert_array_equal(dx, back1(d))
    if "add" in epilogue:
        np.testing.assert_array_equal(d_other, d)
    else:
        assert d_other is None
    for k in a.grads:
        np.testing.assert_array_equal(a.grads[k], b.grads[k])
    for k in a.buffers:
        np.testing.assert_array_equal(a.buffers[k], b.buffers[k])


@pytest.mark.skipif(parallel.MAX_PARTS < 2, reason="a machine with one CPU never cuts")
def test_the_same_bits_on_one_and_two_threads(rng):
    shape = (4, 32, 32, 48)  # several parts per pass
    assert len(parallel.ranges(4 * 32 * 32, batchnorm._min_rows(48))) > 1
    x = rng.normal(1, 2, size=shape).astype(np.float32)
    dy = rng.normal(size=shape).astype(np.float32)
    other = rng.normal(size=shape).astype(np.float32)
    results = []
    before = parallel.num_threads()
    try:
        for threads in (1, 2):
            parallel.set_num_threads(threads)
            layer = make(shape, np.float32, np.random.default_rng(0))
            y, back = fusion._norm_run(layer, ("add", "relu"))(x, other, True)
            layer.zero_grads()
            dx, d = back(dy)
            results.append([y, dx, d, *layer.grads.values(), *layer.buffers.values()])
    finally:
        parallel.set_num_threads(before)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


class _ThreadRanks:
    """A world of ranks that are threads of this process (each with its own shard):
    allreduce_sum adds their arrays in rank order, as an MPI world would."""

    def __init__(self, size):
        self.size = size
        self.barrier = threading.Barrier(size, timeout=60)
        self.slots = [None] * size
        self.rank = threading.local()

    def allreduce_sum(self, arrays):
        self.slots[self.rank.value] = [np.asarray(a, np.float64) for a in arrays]
        self.barrier.wait()
        out = [sum(parts[i] for parts in self.slots) for i in range(len(arrays))]
        self.barrier.wait()
        return out


class _PerThread(dict):
    """shard._state with a shard per thread."""

    def __init__(self, base):
        super().__init__(base)
        self.local = threading.local()

    def __getitem__(self, key):
        if key == "shard":
            return getattr(self.local, "shard", None)
        return super().__getitem__(key)

    def __setitem__(self, key, value):
        if key == "shard":
            self.local.shard = value
        else:
            super().__setitem__(key, value)


@pytest.mark.parametrize("bounds", [[(0, 2), (2, 6)], [(0, 0), (0, 6)]])
def test_a_batch_split_over_ranks_gives_the_whole_batchs_numbers(rng, monkeypatch,
                                                                   bounds):
    """Every rank takes the compiled passes when the whole batch is big enough (here
    one rank holds 160 values, the other 320 or none: below the threshold of 240
    alone), and the ranks' sums give the whole batch's numbers."""
    monkeypatch.setattr(normalization, "KERNEL_MIN", 240)
    shape = (6, 4, 4, 5)
    x = rng.normal(3, 2, size=shape)
    dy = rng.normal(size=shape)
    whole = make(shape, np.float64, rng, momentum=0.5)
    y, back = whole.forward(x, True)
    whole.zero_grads()
    dx = back(dy)
    monkeypatch.setattr(shard, "_state", _PerThread(shard._state))
    world = _ThreadRanks(2)
    out, ranks = [None, None], []

    def rank(r, lo, hi):
        world.rank.value = r
        layer = make(shape, np.float64, np.random.default_rng(1), momentum=0.5)
        layer.params = {k: v.copy() for k, v in whole.params.items()}
        with shard.active(shard.Shard(world, 6, lo, hi)):
            assert layer._kernel_rows(x[lo:hi]) is not None
            yr, backr = layer.forward(x[lo:hi], True)
            layer.zero_grads()
            out[r] = (yr, backr(dy[lo:hi]), layer)

    for r, (lo, hi) in enumerate(bounds):
        ranks.append(threading.Thread(target=rank, args=(r, lo, hi)))
        ranks[-1].start()
    for t in ranks:
        t.join()
    np.testing.assert_allclose(np.concatenate([o[0] for o in out]), y, rtol=1e-12)
    np.testing.assert_allclose(np.concatenate([o[1] for o in out]), dx, rtol=1e-10,
                               atol=1e-13)
    for k in whole.grads:  # each rank's share: the data-parallel step sums them
        np.testing.assert_allclose(out[0][2].grads[k] + out[1][2].grads[k],
                                   whole.grads[k], rtol=1e-12)
    for k in whole.buffers:
        for o in out:
            np.testing.assert_allclose(o[2].buffers[k], whole.buffers[k], rtol=1e-12)


def test_the_micro_batch_rule_of_accumulate_steps_holds_on_the_compiled_path(
        compiled, monkeypatch):
    """tests/test_accumulate.py's BatchNormalization cases (statistics and the unbiased
    variance's count per micro-batch: shard.statistics_rows), on the compiled passes."""
    import test_accumulate

    calls = []
    moments = batchnorm.moments
    monkeypatch.setattr(batchnorm, "moments", lambda *a: calls.append(1) or moments(*a))
    test_accumulate.test_batch_normalization_takes_each_micro_batchs_statistics()
    test_accumulate.test_batch_normalization_unbiased_variance_counts_the_micro_batch()
    assert len(calls) >= 4  # two micro-batches each
