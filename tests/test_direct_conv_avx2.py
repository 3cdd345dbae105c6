"""The direct convolution's AVX2 register block (direct_conv_kernels.py's ``*_narrow``
kernels, taken where direct_conv.wide_vectors() is false): the same bits as the
AVX-512 block on this machine (forward, dx, dW, db; random shapes), the same bits on
1 and 2 threads; compiled for AVX2 (NUMBA_CPU_NAME=haswell, in a subprocess) against
the reference (conv_reference) with ymm FMAs and no stack access in the inner loops;
and the AVX2 rule."""

import os
import subprocess
import sys

import numpy as np
import pytest

from test_direct_conv import _path, random_case, reference, transposed
from trainer.engine.kernels import conv_reference, direct_conv, parallel
from trainer.engine.kernels.conv import plan2d


@pytest.fixture(autouse=True)
def restore_threads():
    before = parallel.num_threads()
    yield
    parallel.set_num_threads(before)


def _run(x, W, b, relu, strides, dilation, pads, out_hw, dy):
    """(y, dW, db, dx or None) by direct_conv."""
    y = direct_conv.forward(x, W, b, relu, pads, strides, dilation, out_hw)
    input_grad = tuple(strides) == (1, 1) and x.shape[3] >= direct_conv.FB
    return (y, *direct_conv.backward(x, dy, y if relu else None, W, pads, strides,
                                     dilation, input_grad))


def _case(seed):
    """random_case in float32, with ≥ 32 input channels on odd seeds (dx)."""
    x, W, b, strides, dilation, padding, out_hw, pads, dy = random_case(seed, np.float32)
    if seed % 2:
        r = np.random.default_rng(seed)
        c = int(r.integers(32, 40))
        x = r.normal(size=(*x.shape[:3], c)).astype(np.float32)
        W = r.normal(size=(*W.shape[:2], c, W.shape[3])).astype(np.float32)
    return x, W, b, strides, dilation, out_hw, pads, dy


@pytest.mark.parametrize("seed", range(6))
def test_both_blocks_give_the_same_bits(monkeypatch, seed):
    """Every output sums its taps in (p, q, c) order with FMAs in either block: the
    AVX2 block (narrow) and the AVX-512 one agree bit for bit, forward and gradients."""
    x, W, b, strides, dilation, out_hw, pads, dy = _case(seed)
    got = {}
    for wide in (True, False):
        monkeypatch.setattr(direct_conv, "wide_vectors", lambda wide=wide: wide)
        got[wide] = _run(x, W, b, seed % 3 != 0, strides, dilation, pads, out_hw, dy)
    assert (got[True][3] is None) == (seed % 2 == 0 or strides != (1, 1))
    for a, c in zip(got[True], got[False]):
        if a is not None:
            np.testing.assert_array_equal(a, c)


def test_narrow_block_thread_count_changes_no_number(monkeypatch):
    monkeypatch.setattr(direct_conv, "wide_vectors", lambda: False)
    r = np.random.default_rng(7)
    x = r.normal(size=(5, 10, 9, 33)).astype(np.float32)
    W = r.normal(size=(3, 3, 33, 40)).astype(np.float32)
    b = r.normal(size=40).astype(np.float32)
    out_hw, pads = plan2d((10, 9), (3, 3), (1, 1), (1, 1), "same")
    dy = r.normal(size=(5, *out_hw, 40)).astype(np.float32)
    runs = []
    for threads in (1, 2):
        parallel.set_num_threads(threads)
        runs.append(_run(x, W, b, True, (1, 1), (1, 1), pads, out_hw, dy))
    assert runs[0][3] is not None
    for a, c in zip(*runs):
        np.testing.assert_array_equal(a, c)


def test_avx2_rule_is_avx512s(monkeypatch):
    """On AVX2 the 3×3 stride-1 layers take the direct path as on AVX-512 — inference
    and 64 channels included (measured on a real AVX2 machine, module doc); before, only
    training up to 32 input channels did. Either block, the same choices."""
    monkeypatch.delenv("TRAINER_CONV_ALGO", raising=False)
    monkeypatch.delenv("TRAINER_CONV_DIRECT", raising=False)
    cases = [((3, 32, True), {"padding": "same"}, True),
             ((3, 32, False), {"padding": "same"}, True),
             ((32, 32, True), {"input_grad": True}, True),
             ((32, 64, True), {"input_grad": True, "padding": "same"}, True),
             ((64, 64, True), {"input_grad": True}, True),  # 8 × 8 outputs: small
             ((32, 32, False), {"padding": "same"}, True),  # inference
             ((64, 32, False), {"size": 19}, False),  # 17 × 17 outputs at 64 channels
             ((32, 128, True), {"input_grad": True}, False),
             ((32, 32, True), {"input_grad": True, "strides": 2}, False),
             ((8, 32, True), {"kernel_size": 5}, False)]
    for wide in (False, True):
        monkeypatch.setattr(direct_conv, "wide_vectors", lambda wide=wide: wide)
        for args, kw, taken in cases:
            assert _path(monkeypatch, *args, **kw)[0] is taken, (wide, args, kw)


AVX2_RUN = """
import re, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from test_direct_conv import random_case
from trainer.engine.kernels import direct_conv
from trainer.engine.kernels.conv import plan2d
assert direct_conv.wide_vectors() is False
out = {}
for seed in range(4):
    x, W, b, strides, dilation, padding, out_hw, pads, dy = random_case(seed)
    y = direct_conv.forward(x, W, b, True, pads, strides, dilation, out_hw)
    dW, db = direct_conv.weight_grad(x, dy, y, W.shape, pads, strides, dilation)
    out.update({f"y{seed}": y, f"dW{seed}": dW, f"db{seed}": db})
r = np.random.default_rng(9)
x, W = r.normal(size=(2, 9, 8, 34)), r.normal(size=(3, 3, 34, 36))
out_hw, pads = plan2d((9, 8), (3, 3), (1, 1), (1, 1), "same")
dy = r.normal(size=(2, *out_hw, 36))
out["dx"] = direct_conv.backward(x, dy, None, W, pads, (1, 1), (1, 1), True)[2]
stage = direct_conv.Stage(W, None, True, pads, (1, 1), (1, 1), out_hw, True)
out["chain"] = direct_conv.forward_chain(x, [stage])
np.savez(sys.argv[2], **out)
# only the AVX2 block's kernels were compiled (a new cache: nothing was read from it)
from trainer.engine.kernels import direct_conv_kernels as k
assert k.forward_sample_narrow.signatures and k.grad_sample_narrow.signatures
for wide in (k.forward_sample, k.grad_sample, k.forward_pool_sample):
    assert not wide.signatures, wide
# the cached kernels keep no assembly: compile the AVX2 block once more, uncached
import numba
jit = numba.njit(nogil=True, fastmath={"contract"})
xf, W2 = np.zeros(17 * 17 * 32, np.float32), np.zeros((288, 64), np.float32)
toff, ps, rs = np.zeros(288, np.uint64), np.uint64(32), np.uint64(32 * 17)
fwd, grad = jit(k.forward_sample_narrow.py_func), jit(k.grad_sample_narrow.py_func)
fwd(xf, W2, np.zeros(64, np.float32), np.float32(0), toff, ps, rs,
    np.empty((15, 15, 64), np.float32))
grad(xf, np.zeros((15, 15, 64), np.float32), toff, ps, rs, np.empty((288, 64), np.float32))
for fn in (fwd, grad):
    lines = "".join(fn.inspect_asm().values()).splitlines()
    n = next(i for i, line in enumerate(lines) if "vfmadd" in line)
    a = max(i for i in range(n) if re.match(r"\\.LBB", lines[i]))
    e = next(i for i in range(n, len(lines)) if lines[i].strip().startswith("j"))
    loop = lines[a:e + 1]  # the innermost loop: its label to its jump
    fmas = [line for line in loop if "vfmadd" in line]
    assert len(fmas) == k.NPB * k.NFB // 8 and all("ymm" in line for line in fmas), loop
    assert not any("rsp" in line or "zmm" in line for line in loop), loop
print("ok")
"""


def test_avx2_block_compiled_for_avx2(tmp_path):
    """NUMBA_CPU_NAME=haswell (AVX2 + FMA): the narrow kernels against the reference
    (forward, dW, db on random shapes, strides, dilations; dx; a pooled chain stage),
    12 ymm FMAs per step of the inner loops and no spill (no stack access) there; the
    AVX-512 block's kernels never compiled (direct_conv_kernels.BLOCK_ARGS)."""
    # a cache of its own: every kernel this process needs is compiled in it, so that
    # the compiled kernels are the ones it needs
    env = {**os.environ, "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "",
           "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    path = tmp_path / "avx2.npz"
    tests = os.path.dirname(__file__)
    out = subprocess.run([sys.executable, "-c", AVX2_RUN, tests, str(path)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
    got = np.load(path, allow_pickle=False)
    for seed in range(4):
        x, W, b, strides, dilation, padding, out_hw, pads, dy = random_case(seed)
        want = reference(x, W, b, True, strides, padding, dilation, dy)
        for name, exp in zip(("y", "dW", "db"), want):
            np.testing.assert_allclose(got[f"{name}{seed}"], exp, rtol=1e-12, atol=1e-11)
    r = np.random.default_rng(9)
    x, W = r.normal(size=(2, 9, 8, 34)), r.normal(size=(3, 3, 34, 36))
    out_hw, pads = plan2d((9, 8), (3, 3), (1, 1), (1, 1), "same")
    dy = r.normal(size=(2, *out_hw, 36))
    np.testing.assert_allclose(got["dx"], transposed(dy, W, pads, (1, 1), (9, 8)),
                               rtol=1e-12, atol=1e-11)
    y = np.maximum(conv_reference.conv2d(x, W, np.zeros(36), (1, 1), "same"), 0)
    pooled = y[:, :8, :8].reshape(2, 4, 2, 4, 2, 36).max(axis=(2, 4))
    np.testing.assert_allclose(got["chain"], pooled, rtol=1e-12, atol=1e-11)
