"""Winograd F(2×2, 3×3): 3×3 stride-1 convolutions (NHWC) with 2.25× fewer multiplies.

Each 2×2 block of output ("tile") is ``Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`` over the tile's
4×4 input window ``d``. Over a batch that is, per transform point p (16 of them), one
GEMM ``V[p] (tiles, C) · U[p] (C, K)``: the input transform (Numba, one pass reading the
input once, zeros where the window leaves the image, so no padded copy), 16 BLAS
GEMMs, then the output transform with the bias and relu fused (Numba, one pass). The
transforms are written out in winograd_transforms.py (also the layout of the
transformed arrays: slabs of an odd row count, against L1 set conflicts).

Gradients, both exact gradients of that computation (hence of the convolution):

* ``dx`` is a 3×3 stride-1 convolution of ``dz`` with the kernel flipped and its
  in/out axes swapped, padded by (2 - forward pad): the same three passes.
* ``dW = Gᵀ dU G`` with ``dU[p] = V[p]ᵀ (C, tiles) · D[p] (tiles, K)``, ``D = A dz Aᵀ``
  of each 2×2 output-gradient tile: 16 GEMMs over the same input transform.

Work goes in chunks of a few samples (``CHUNK_BYTES`` of transformed arrays: enough
tiles for the narrow GEMMs to run near BLAS's peak); chunks are fixed by the shapes
alone and fall into at most ``GROUPS`` groups, each summing its chunks' ``dU`` in
order, the groups then summed in order: every number is the same whatever the number
of threads. Transform buffers
are per thread and reused from call to call.

Float32 accuracy (max |error| / max |y| against float64, 26×26 inputs, 64 filters,
C = 32/64/256): F(2×2,3×3) 2.8e-7/3.2e-7/6.6e-7 (its transforms use only ±1 and 0.5,
exact in binary), a direct float32 sum 6.6e-7/1.2e-6/1.8e-6, F(4×4,3×3) (4× fewer
multiplies; transforms with 1/6, 1/24, 2, 4, 8) 4.3e-6/5.7e-6/1.3e-5. The tests hold
float32 Winograd to 1e-5 of the output's scale; F(4×4,3×3) would need 5e-5 and is
not used.

``TRAINER_CONV_ALGO`` = ``auto`` (default: Winograd where ``use``'s rule says it wins),
``winograd`` (every eligible convolution) or ``im2col`` (never; the old path, for
comparison).
"""

import math
import os
import threading

import numpy as np

from trainer.engine.kernels import parallel, winograd_transforms

#: G of F(2×2, 3×3): U = G g Gᵀ
G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])

#: bytes of one chunk's forward transform buffers (V and M): a few hundred tiles
#: or more per GEMM, where sgemm with 32-64 columns runs near its peak (measured:
#: ~60 GFLOP/s at 200 tiles, ~130 at 900, for (tiles, 32)·(32, 32))
CHUNK_BYTES = 4 << 20
#: the dW partial sums: at most this many groups of chunks (module doc)
GROUPS = 8
#: convolutions with fewer input or output channels than this stay on im2col: the
#: transforms' cost does not shrink with the channels as the GEMMs' does (measured,
#: classic CNN shapes, CPU time on one thread, im2col → Winograd, forward / backward
#: ms at batch 128: 32→32 at 32×32 26.4 → 27.4 / 62.4 → 63.7; 32→64 at 15×15
#: 12.3 → 12.7 / 27.1 → 28.2; 64→64 at 15×15 18.7 → 15.1 / 47.3 → 37.0; 3→32: 3×
#: slower). With the written-out transforms (issue 28, round two; one thread, CPU
#: time, load ~8, batch 64) the 32-channel layers still lose in training (im2col /
#: Winograd 0.77 and 0.65) and break even at inference (0.93, 0.92): the rule stays.
MIN_CHANNELS = 64
#: the same bound for a forward without backward (inference): the forward alone wins
#: from 32 channels (same measurement, batch 256, im2col / Winograd: 32→32 at 32×32
#: 1.21 (1.07-1.39), 32→64 at 15×15 1.06 (0.98-1.25), 64→64 1.08 (1.01-1.27))
MIN_CHANNELS_INFERENCE = 32
ALGOS = ("auto", "winograd", "im2col")

_local = threading.local()


def algo():
    """The ``TRAINER_CONV_ALGO`` setting (module doc)."""
    value = os.environ.get("TRAINER_CONV_ALGO", "auto").strip().lower() or "auto"
    if value not in ALGOS:
        from trainer.errors import ConfigError

        raise ConfigError(f"TRAINER_CONV_ALGO: expected one of {', '.join(ALGOS)}, "
                         f"got {value!r}")
    return value


def eligible(kernel, strides, dilation, rank):
    """Whether F(2×2,3×3) computes this convolution: 2-D, 3×3, stride 1, dilation 1."""
    return rank == 2 and tuple(kernel) == (3, 3) and tuple(strides) == (1, 1) and (
        tuple(dilation) == (1, 1))


def use(kernel, strides, dilation, rank, channels, filters, training=True):
    """Whether a Conv layer takes the Winograd path (decided by shape and by whether
    a backward follows, see ``MIN_CHANNELS``, ``MIN_CHANNELS_INFERENCE`` and
    benchmarks/README.md for the measurements behind the rule)."""
    mode = algo()
    if mode == "im2col" or not eligible(kernel, strides, dilation, rank):
        return False
    least = MIN_CHANNELS if training else MIN_CHANNELS_INFERENCE
    return mode == "winograd" or (channels >= least and filters >= least)


def transform_kernel(W):
    """U (16, C, K) of a (3, 3, C, K) kernel: G g Gᵀ per (c, k)."""
    g = G.astype(W.dtype)
    U = np.einsum("ap,pqck,bq->abck", g, W, g, optimize=True)
    return np.ascontiguousarray(U.reshape(16, *W.shape[2:]))


def kernel_gradient(dU):
    """dW (3, 3, C, K) from the gradient of U (16, C, K): Gᵀ dU G per (c, k)."""
    g = G.astype(dU.dtype)
    return np.einsum("ap,abck,bq->pqck", g, dU.reshape(4, 4, *dU.shape[1:]), g,
                     optimize=True)


#: Bᵀ and Aᵀ of F(2×2, 3×3): V = Bᵀ d B, y = Aᵀ m A, D = A g Aᵀ (the transforms,
#: written out in winograd_transforms.py; the tests check them against these)
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)


def _scratch(name, shape, dtype):
    """A per-thread scratch array of ``shape``, reusing (a prefix of) one buffer."""
    store = _local.__dict__.setdefault("buffers", {})
    need = math.prod(shape)
    key = (name, np.dtype(dtype))
    buf = store.get(key)
    if buf is None or buf.size < need:
        buf = np.empty(need, dtype)
        store[key] = buf
    return buf[:need].reshape(shape)


def _slabs(name, tiles, cols, dtype):
    """(a transformed array in winograd_transforms' layout (16, rows ≥ tiles, cols), its
    16 (tiles, cols) slabs): a per-thread buffer."""
    full = _scratch(name, (16, winograd_transforms.slab_rows(tiles), cols), dtype)
    return full, [full[p, :tiles] for p in range(16)]


def _products(A, B, out, transpose=False):
    """out[p] = A[p] @ B[p] (or A[p]ᵀ @ B[p]) for the 16 points, one BLAS call each
    (np.matmul on the stacked arrays measured 7 ms against 1 ms for the loop, for 16
    (900, 32)·(32, 32) products)."""
    for p in range(16):
        np.matmul(A[p].T if transpose else A[p], B[p], out=out[p])


class Tiling:
    """How one convolution call walks its batch: tiles per sample, samples per chunk
    (from the shapes alone), chunk groups (fixed: the dW sums do not depend on the
    number of threads)."""

    def __init__(self, n, out_hw, in_hw, channels, filters, itemsize):
        self.n = n
        self.th, self.tw = (out_hw[0] + 1) // 2, (out_hw[1] + 1) // 2
        self.bh, self.bw = (in_hw[0] + 1) // 2, (in_hw[1] + 1) // 2  # dx's tiles
        per_sample = 16 * self.th * self.tw * (channels + filters) * itemsize
        self.per_chunk = max(1, min(n, CHUNK_BYTES // max(per_sample, 1)))
        self.n_chunks = -(-n // self.per_chunk)
        self.groups = parallel.split(self.n_chunks, GROUPS)

    def chunks(self, g0, g1):
        """(start, stop) samples of every chunk in groups g0:g1."""
        for c in range(self.groups[g0][0], self.groups[g1 - 1][1]):
            yield c * self.per_chunk, min((c + 1) * self.per_chunk, self.n)

    def group_of(self, chunk):
        return next(i for i, (s, f) in enumerate(self.groups) if s <= chunk < f)

    def run(self, fn):
        """fn(g0, g1) over the groups, split over the engine's threads."""
        return parallel.run(fn, len(self.groups), min_items=1)


def conv3x3(x, U, pads, out_hw, z, bias=None, relu=False, tiling=None):
    """z (N, Ho, Wo, K) = the 3×3 stride-1 convolution of x (N, H, W, C) with the
    transformed kernel U (16, C, K), top/left padding ``pads`` (what lies past the
    input on any side reads as zero), then + bias and relu if given."""
    kern = winograd_transforms.kernels()
    n, h, w, c = x.shape
    k = U.shape[2]
    tiling = tiling or Tiling(n, out_hw, (h, w), c, k, x.dtype.itemsize)
    th, tw = (out_hw[0] + 1) // 2, (out_hw[1] + 1) // 2
    pt, pl = pads
    b = bias if bias is not None else np.zeros(k, x.dtype)

    def part(g0, g1):
        for a, e in tiling.chunks(g0, g1):
            t = (e - a) * th * tw
            V, Vp = _slabs("V", t, c, x.dtype)
            M, Mp = _slabs("M", t, k, x.dtype)
            kern["input"](x, a, e, pt, pl, th, tw, V)
            _products(Vp, U, Mp)
            kern["output"](M, a, e, th, tw, z, b, relu)

    tiling.run(part)
    return z


def forward(x, W, bias, relu, pads, out_hw):
    """The layer's forward: (z, tiling); pads = ((top, bottom), (left, right));
    x C-contiguous (the Numba transforms read it as rows of channels)."""
    n, h, w, c = x.shape
    k = W.shape[3]
    tiling = Tiling(n, out_hw, (h, w), c, k, x.dtype.itemsize)
    U = transform_kernel(W)
    z = np.empty((n, *out_hw, k), x.dtype)
    conv3x3(x, U, (pads[0][0], pads[1][0]), out_hw, z, bias, relu, tiling)
    return z, tiling


def backward(x, W, dz_of, pads, out_hw, tiling, need_dx, need_db):
    """(dx or None, dW, db or None) of the forward convolution. ``dz_of(a, b)`` returns
    the pre-activation gradient of samples a:b (it may compute it then, in the worker
    thread that asks)."""
    kern = winograd_transforms.kernels()
    n, h, w, c = x.shape
    k = W.shape[3]
    th, tw = tiling.th, tiling.tw
    bh, bw = tiling.bh, tiling.bw
    back_pads = (2 - pads[0][0], 2 - pads[1][0])
    Uf = transform_kernel(np.ascontiguousarray(W[::-1, ::-1].transpose(0, 1, 3, 2))) \
        if need_dx else None
    dx = np.empty(x.shape, x.dtype) if need_dx else None
    dU = np.zeros((len(tiling.groups), 16, c, k), x.dtype)
    db = np.zeros((tiling.n_chunks, k), x.dtype) if need_db else None
    zeros = np.zeros(c, x.dtype)

    def part(g0, g1):
        for a, e in tiling.chunks(g0, g1):
            dz = dz_of(a, e)
            if need_db:
                db[a // tiling.per_chunk] = dz.reshape(-1, k).sum(axis=0)
            t = (e - a) * th * tw
            V, Vp = _slabs("V", t, c, x.dtype)
            D, Dp = _slabs("D", t, k, x.dtype)
            P = _scratch("P", (16, c, k), x.dtype)
            kern["input"](x, a, e, pads[0][0], pads[1][0], th, tw, V)
            kern["grad"](dz, 0, e - a, th, tw, D)
            _products(Vp, Dp, P, transpose=True)
            dU[tiling.group_of(a // tiling.per_chunk)] += P
            if need_dx:
                tb = (e - a) * bh * bw
                V2, V2p = _slabs("V2", tb, k, x.dtype)
                M2, M2p = _slabs("M2", tb, c, x.dtype)
                kern["input"](dz, 0, e - a, back_pads[0], back_pads[1], bh, bw, V2)
                _products(V2p, Uf, M2p)
                kern["output"](M2, 0, e - a, bh, bw, dx[a:e], zeros, False)

    tiling.run(part)
    dW = kernel_gradient(dU.sum(axis=0))
    return dx, dW, (db.sum(axis=0) if need_db else None)
