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
tiles for the narrow GEMMs to run near BLAS's peak), fixed by the shapes alone. When
a chunk holds few tiles for its channels (``PARTIAL_SHARE``), the backward transforms
whole blocks of chunks (``Blocks``: up to ``BLOCK_BYTES``, the whole batch at
ResNet50's 7×7 and 14×14 maps) and then runs ``dU[p] = V[p]ᵀ D[p]``
over all of a block's tiles, the 16 points split over the threads; blocks add up in
order: every number is the same whatever the number of threads. (Otherwise, and
before for all shapes, each chunk's 16 products go into a per-thread buffer added into
one of 8 group partials (``GROUPS``), summed in order: at 7×7
with 512 channels a chunk holds 64 tiles, so per 64-long reduction a 16 MB product was
written and added: that backward was 2.5× slower at the ResNet50 shape 7×7×512 and
1.7× at 14×14×256, batch 16, 2 threads, in one process interleaved.) Transform buffers are per thread and reused from call to call.
The kernel's transforms (``G g Gᵀ``, ``Gᵀ dU G``) are Numba passes too (the einsum
they replace took ~5 ms per 512×512 kernel, three times per layer and step).

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


import numpy as np

from trainer.engine.kernels import env_choice, parallel, winograd_transforms

#: G of F(2×2, 3×3): U = G g Gᵀ
G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])

#: bytes of one chunk's forward transform buffers (V and M): a few hundred tiles
#: or more per GEMM, where sgemm with 32-64 columns runs near its peak (measured:
#: ~60 GFLOP/s at 200 tiles, ~130 at 900, for (tiles, 32)·(32, 32))
CHUNK_BYTES = 4 << 20
#: the chunks fall into at most this many groups (the forward's parallel split; the
#: chunked backward's dW partials)
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
#: kernel transforms smaller than this many outputs run on one thread
KERNEL_SPLIT = 1 << 18
#: the weight gradient's GEMMs run per block of chunks, over every tile of the block at
#: once (module doc): at most this many bytes of transformed input and output gradient
BLOCK_BYTES = 32 << 20
#: a chunk whose transformed input and gradient take at least this many times its dU
#: partial (16·C·K) keeps the per-chunk weight gradient (``_chunked_dU``): ResNet50's
#: 56×56×64 (24×) and 28×28×128 (3×) chunks, not 14×14×256 (0.8×) or 7×7×512 (0.25×)
#: (layer A/B, batch 16, blocks / chunked: even within noise at 56×56 and 28×28, but
#: in whole-step profiles on the loaded machine their backward's share rose ~1 point
#: each with blocks: a block's 25-32 MB of slabs go through memory between passes)
PARTIAL_SHARE = 2



def algo():
    """The ``TRAINER_CONV_ALGO`` setting (module doc)."""
    return env_choice("TRAINER_CONV_ALGO", ALGOS)


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


def _by_channels(fn, c, k):
    """fn(c0, c1) over input-channel ranges, split over the engine's threads when big
    (each part writes its own elements: no number depends on the split)."""
    parallel.run(fn, c, min_items=max(1, KERNEL_SPLIT // max(16 * k, 1)))


def transform_kernel(W):
    """U (16, C, K) of a (3, 3, C, K) kernel: G g Gᵀ per (c, k) (Numba,
    winograd_transforms)."""
    W = np.ascontiguousarray(W)
    c, k = W.shape[2:]
    U = np.empty((16, c, k), W.dtype)
    kern = winograd_transforms.kernels()["kernel"]
    _by_channels(lambda c0, c1: kern(W, c0, c1, U), c, k)
    return U


def kernel_gradient(dU):
    """dW (3, 3, C, K) from the gradient of U (16, C, K): Gᵀ dU G per (c, k)."""
    dU = np.ascontiguousarray(dU)
    c, k = dU.shape[1:]
    dW = np.empty((3, 3, c, k), dU.dtype)
    kern = winograd_transforms.kernels()["kernel_grad"]
    _by_channels(lambda c0, c1: kern(dU, c0, c1, dW), c, k)
    return dW


#: the transformed kernel of the input gradient's convolution (W flipped, its in/out
#: axes swapped) is U's points permuted (G J = Π G, J the 3×3 flip, Π swaps rows 0 and
#: 3), each transposed: ``Uf[p] = U[FLIP[p]].T``
FLIP = [4 * [3, 1, 2, 0][a] + [3, 1, 2, 0][b] for a in range(4) for b in range(4)]


#: Bᵀ and Aᵀ of F(2×2, 3×3): V = Bᵀ d B, y = Aᵀ m A, D = A g Aᵀ (the transforms,
#: written out in winograd_transforms.py; the tests check them against these)
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)




def _scratch(name, shape, dtype):
    """This module's per-thread scratch array (``parallel.scratch``)."""
    return parallel.scratch(__name__, name, shape, dtype)


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


class Blocks:
    """The backward's blocks: runs of whole chunks whose transformed input and output
    gradient (16 slabs each, all their tiles) take at most ``BLOCK_BYTES``, an even
    number of chunks when more than one fits (two threads share a block's transforms
    evenly). ``chunked``: the chunks are long enough to keep the per-chunk weight
    gradient instead (``PARTIAL_SHARE``). Fixed by the shapes alone."""

    def __init__(self, tiling, channels, filters, itemsize):
        self.tiling = tiling
        tiles = tiling.th * tiling.tw
        chunk = 16 * tiling.per_chunk * tiles * (channels + filters) * itemsize
        self.chunked = chunk >= PARTIAL_SHARE * 16 * channels * filters * itemsize
        per = max(1, BLOCK_BYTES // max(chunk, 1))
        per = per - per % 2 if per > 1 else 1
        self.ranges = [(c, min(c + per, tiling.n_chunks))
                       for c in range(0, tiling.n_chunks, per)]
        self.max_tiles = min(per * tiling.per_chunk, tiling.n) * tiles

    def samples(self, chunk):
        per = self.tiling.per_chunk
        return chunk * per, min((chunk + 1) * per, self.tiling.n)


def backward(x, W, dz_of, pads, out_hw, tiling, need_dx, need_db):
    """(dx or None, dW, db or None) of the forward convolution. ``dz_of(a, b)`` returns
    the pre-activation gradient of samples a:b (it may compute it then, in the worker
    thread that asks).

    Per block (``Blocks``): first, over its chunks in parallel, the input and gradient
    transforms of every tile into the block's slabs (and dx and db chunk by chunk);
    then, over the 16 transform points in parallel, ``dU[p] += V[p]ᵀ D[p]``, one GEMM
    over all of the block's tiles (a long reduction: at 7×7 and 14×14 maps a chunk
    holds only 64-100 tiles, and per-chunk products summed into per-group partials
    cost 2-5× the forward). The blocks add up in order and each point's sum is one
    thread's: the same numbers on any number of threads. Chunks with many tiles
    (``Blocks.chunked``) keep the per-chunk products, summed per group of chunks
    (``_chunked_dU``)."""
    kern = winograd_transforms.kernels()
    n, h, w, c = x.shape
    k = W.shape[3]
    bh, bw = tiling.bh, tiling.bw
    pt, pl = pads[0][0], pads[1][0]
    back_pads = (2 - pt, 2 - pl)
    Uf = None
    if need_dx:
        U = transform_kernel(W)
        Uf = [U[FLIP[p]].T for p in range(16)]
    dx = np.empty(x.shape, x.dtype) if need_dx else None
    db = np.zeros((tiling.n_chunks, k), x.dtype) if need_db else None
    zeros = np.zeros(c, x.dtype)
    blocks = Blocks(tiling, c, k, x.dtype.itemsize)

    def chunk_grads(chunk):
        """dz of one chunk, with its db and dx done (the chunk's samples a:e)."""
        a, e = blocks.samples(chunk)
        dz = dz_of(a, e)
        if need_db:
            db[chunk] = dz.reshape(-1, k).sum(axis=0)
        if need_dx:
            tb = (e - a) * bh * bw
            V2, V2p = _slabs("V2", tb, k, x.dtype)
            M2, M2p = _slabs("M2", tb, c, x.dtype)
            kern["input"](dz, 0, e - a, back_pads[0], back_pads[1], bh, bw, V2)
            _products(V2p, Uf, M2p)
            kern["output"](M2, 0, e - a, bh, bw, dx[a:e], zeros, False)
        return a, e, dz

    if blocks.chunked:
        dU = _chunked_dU(x, tiling, pads, k, chunk_grads)
    else:
        dU = _blocked_dU(x, tiling, blocks, pads, k, chunk_grads)
    dW = kernel_gradient(dU)
    return dx, dW, (db.sum(axis=0) if need_db else None)


def _blocked_dU(x, tiling, blocks, pads, k, chunk_grads):
    """dU (16, C, K) block by block (``backward``)."""
    kern = winograd_transforms.kernels()
    c = x.shape[3]
    th, tw = tiling.th, tiling.tw
    pt, pl = pads[0][0], pads[1][0]
    dU = np.empty((16, c, k), x.dtype)
    rows = winograd_transforms.slab_rows(blocks.max_tiles)
    VB = _scratch("VB", (16, rows, c), x.dtype)
    DB = _scratch("DB", (16, rows, k), x.dtype)
    for index, (c0, c1) in enumerate(blocks.ranges):
        base = blocks.samples(c0)[0]
        tiles = (blocks.samples(c1 - 1)[1] - base) * th * tw

        def transforms(i0, i1):
            for chunk in range(c0 + i0, c0 + i1):
                a, e, dz = chunk_grads(chunk)
                t0 = (a - base) * th * tw
                kern["input_at"](x, a, e, pt, pl, th, tw, VB, t0)
                kern["grad_at"](dz, 0, e - a, th, tw, DB, t0)

        def products(p0, p1, accumulate=index > 0):
            for p in range(p0, p1):
                Vp, Dp = VB[p, :tiles].T, DB[p, :tiles]
                if accumulate:
                    P = _scratch("P", (c, k), x.dtype)
                    np.matmul(Vp, Dp, out=P)
                    dU[p] += P
                else:
                    np.matmul(Vp, Dp, out=dU[p])

        parallel.run(transforms, c1 - c0, min_items=1)
        parallel.run(products, 16, min_items=1)
    return dU


def _chunked_dU(x, tiling, pads, k, chunk_grads):
    """dU (16, C, K) chunk by chunk: each chunk's 16 products into a per-thread buffer
    added into its group's partial while the chunk's transforms are in cache; the
    groups (``Tiling.groups``, fixed by the shapes) summed in order."""
    kern = winograd_transforms.kernels()
    c = x.shape[3]
    th, tw = tiling.th, tiling.tw
    pt, pl = pads[0][0], pads[1][0]
    dU = np.zeros((len(tiling.groups), 16, c, k), x.dtype)

    def part(g0, g1):
        for g in range(g0, g1):
            for chunk in range(*tiling.groups[g]):
                a, e, dz = chunk_grads(chunk)
                t = (e - a) * th * tw
                V, Vp = _slabs("V", t, c, x.dtype)
                D, Dp = _slabs("D", t, k, x.dtype)
                P = _scratch("P16", (16, c, k), x.dtype)
                kern["input"](x, a, e, pt, pl, th, tw, V)
                kern["grad"](dz, 0, e - a, th, tw, D)
                _products(Vp, Dp, P, transpose=True)
                dU[g] += P

    tiling.run(part)
    return dU.sum(axis=0)
