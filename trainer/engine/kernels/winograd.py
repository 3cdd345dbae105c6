"""Winograd F(2×2, 3×3): 3×3 stride-1 convolutions (NHWC) with 2.25× fewer multiplies.

Each 2×2 block of output ("tile") is ``Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`` over the tile's
4×4 input window ``d``. Over a batch that is, per transform point p (16 of them), one
GEMM ``V[p] (tiles, C) · U[p] (C, K)``: the input transform (Numba, one pass reading the
input once, zeros where the window leaves the image, so no padded copy), 16 BLAS
GEMMs, then the output transform with the bias and relu fused (Numba, one pass).

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

from trainer.engine.kernels import parallel

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
#: slower)
MIN_CHANNELS = 64
ALGOS = ("auto", "winograd", "im2col")

_KERNELS = None
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


def use(kernel, strides, dilation, rank, channels, filters):
    """Whether a Conv layer takes the Winograd path (decided by shape, see the
    module doc and benchmarks/README.md for the measurements behind the rule)."""
    mode = algo()
    if mode == "im2col" or not eligible(kernel, strides, dilation, rank):
        return False
    return mode == "winograd" or (channels >= MIN_CHANNELS and filters >= MIN_CHANNELS)


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


#: Bᵀ and Aᵀ of F(2×2, 3×3): V = Bᵀ d B, y = Aᵀ m A, D = A g Aᵀ
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)


def _terms(L, R, flat=False):
    """The sparse map ``out[a, b] = Σ L[a, i] · src[i, j] · R[b, j]`` as rows p = (a, b)
    of (i, j, coefficient) terms (non-zero only): (idx (P, 9, 2), coef (P, 9),
    count (P,)). ``flat``: the source is indexed (i·cols + j, 0) (the 16 products)."""
    rows, cols = L.shape[0] * R.shape[0], R.shape[1]
    idx = np.zeros((rows, 9, 2), np.int64)
    coef = np.zeros((rows, 9))
    count = np.zeros(rows, np.int64)
    for a in range(L.shape[0]):
        for b in range(R.shape[0]):
            p = a * R.shape[0] + b
            for i in range(L.shape[1]):
                for j in range(R.shape[1]):
                    if L[a, i] * R[b, j]:
                        idx[p, count[p]] = (i * cols + j, 0) if flat else (i, j)
                        coef[p, count[p]] = L[a, i] * R[b, j]
                        count[p] += 1
    return idx, coef, count


TERMS = {"input": _terms(BT, BT), "output": _terms(AT, AT, flat=True),
         "grad": _terms(AT.T, AT.T)}
_terms_cache = {}


def terms(name, dtype):
    """TERMS[name] with the coefficients in ``dtype`` (no float64 promotion)."""
    key = (name, np.dtype(dtype))
    if key not in _terms_cache:
        idx, coef, count = TERMS[name]
        _terms_cache[key] = (idx, coef.astype(dtype), count)
    return _terms_cache[key]


def _compile():
    import numba

    @numba.njit(cache=True, nogil=True, inline="always")
    def offsets(idx, count, rows, cols):
        """Row offsets of the terms' sources in a (rows, c) array: (i·cols + j)·rows."""
        offs = np.zeros(idx.shape[:2], np.int64)
        for p in range(count.shape[0]):
            for j in range(count[p]):
                offs[p, j] = (idx[p, j, 0] * cols + idx[p, j, 1]) * rows
        return offs

    @numba.njit(cache=True, nogil=True, inline="always")
    def gather(dst, t, T, c, src, base, offs, coef, count):
        """dst[p·T + t, :] = Σ_j coef[p, j] · src[base + offs[p, j], :] over 2-D
        (rows, c) arrays: one contiguous multiply-add loop per term, vectorised over
        the channels (row indices fixed in the loop, no array views per tile)."""
        for p in range(count.shape[0]):
            o = p * T + t
            s = base + offs[p, 0]
            cf = coef[p, 0]
            for k in range(c):
                dst[o, k] = cf * src[s, k]
            for j in range(1, count[p]):
                s = base + offs[p, j]
                cf = coef[p, j]
                for k in range(c):
                    dst[o, k] += cf * src[s, k]

    @numba.njit(cache=True, nogil=True)
    def input_transform(x, n0, n1, pt, pl, th, tw, V, idx, coef, count):
        """V[p, t, c] = (Bᵀ d B)[p] of tile t's 4×4 window d (rows 2i - pt + a); a
        window inside the image is read in place, one across its edge through a
        zero-filled copy."""
        _, h, w, c = x.shape
        T = V.shape[1]
        xf = x.reshape(-1, c)
        Vf = V.reshape(-1, c)
        d = np.zeros((16, c), x.dtype)
        in_x = offsets(idx, count, 1, w)
        in_d = offsets(idx, count, 1, 4)
        t = 0
        for n in range(n0, n1):
            for ti in range(th):
                r0 = 2 * ti - pt
                for tj in range(tw):
                    s0 = 2 * tj - pl
                    if r0 >= 0 and s0 >= 0 and r0 + 4 <= h and s0 + 4 <= w:
                        gather(Vf, t, T, c, xf, (n * h + r0) * w + s0, in_x, coef, count)
                    else:
                        for a in range(4):
                            r = r0 + a
                            for b in range(4):
                                s = s0 + b
                                o = a * 4 + b
                                if 0 <= r < h and 0 <= s < w:
                                    src = (n * h + r) * w + s
                                    for k in range(c):
                                        d[o, k] = xf[src, k]
                                else:
                                    for k in range(c):
                                        d[o, k] = 0
                        gather(Vf, t, T, c, d, 0, in_d, coef, count)
                    t += 1

    @numba.njit(cache=True, nogil=True)
    def output_transform(M, n0, n1, th, tw, z, bias, add_bias, relu, idx, coef, count):
        """z[n, 2i:2i+2, 2j:2j+2] = Aᵀ m A (+ bias, relu) of tile t's 16 products."""
        _, ho, wo, kk = z.shape
        T = M.shape[1]
        Mf = M.reshape(-1, kk)
        zf = z.reshape(-1, kk)
        o = np.empty((4, kk), z.dtype)
        offs = offsets(idx, count, T, 1)  # term (q, 0): product q's rows
        t = 0
        for n in range(n0, n1):
            for ti in range(th):
                for tj in range(tw):
                    gather(o, 0, 1, kk, Mf, t, offs, coef, count)
                    for q in range(4):
                        i = 2 * ti + q // 2
                        j = 2 * tj + q % 2
                        if i >= ho or j >= wo:
                            continue
                        dst = (n * ho + i) * wo + j
                        for k in range(kk):
                            v = o[q, k] + bias[k] if add_bias else o[q, k]
                            # not (v < 0): NaN stays NaN, as fused.bias_act
                            zf[dst, k] = (0 if v < 0 else v) if relu else v
                    t += 1

    @numba.njit(cache=True, nogil=True)
    def grad_transform(dz, n0, n1, th, tw, D, idx, coef, count):
        """D[p, t, k] = (A g Aᵀ)[p] of tile t's 2×2 output gradient g (zeros past
        the edge of an odd-sized output)."""
        _, ho, wo, kk = dz.shape
        T = D.shape[1]
        df = dz.reshape(-1, kk)
        Df = D.reshape(-1, kk)
        g = np.zeros((4, kk), dz.dtype)
        in_dz = offsets(idx, count, 1, wo)
        in_g = offsets(idx, count, 1, 2)
        t = 0
        for n in range(n0, n1):
            for ti in range(th):
                i0 = 2 * ti
                for tj in range(tw):
                    j0 = 2 * tj
                    if i0 + 2 <= ho and j0 + 2 <= wo:
                        gather(Df, t, T, kk, df, (n * ho + i0) * wo + j0, in_dz, coef,
                               count)
                    else:
                        for a in range(2):
                            for b in range(2):
                                o = a * 2 + b
                                if i0 + a < ho and j0 + b < wo:
                                    src = (n * ho + i0 + a) * wo + j0 + b
                                    for k in range(kk):
                                        g[o, k] = df[src, k]
                                else:
                                    for k in range(kk):
                                        g[o, k] = 0
                        gather(Df, t, T, kk, g, 0, in_g, coef, count)
                    t += 1

    return {"input": input_transform, "output": output_transform, "grad": grad_transform}


def _kernels():
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _compile()
    return _KERNELS


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
    kern = _kernels()
    n, h, w, c = x.shape
    k = U.shape[2]
    tiling = tiling or Tiling(n, out_hw, (h, w), c, k, x.dtype.itemsize)
    th, tw = (out_hw[0] + 1) // 2, (out_hw[1] + 1) // 2
    pt, pl = pads
    b = bias if bias is not None else np.zeros(k, x.dtype)

    def part(g0, g1):
        for a, e in tiling.chunks(g0, g1):
            t = (e - a) * th * tw
            V = _scratch("V", (16, t, c), x.dtype)
            M = _scratch("M", (16, t, k), x.dtype)
            kern["input"](x, a, e, pt, pl, th, tw, V, *terms("input", x.dtype))
            _products(V, U, M)
            kern["output"](M, a, e, th, tw, z, b, bias is not None, relu,
                           *terms("output", x.dtype))

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
    kern = _kernels()
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
            V = _scratch("V", (16, t, c), x.dtype)
            D = _scratch("D", (16, t, k), x.dtype)
            P = _scratch("P", (16, c, k), x.dtype)
            kern["input"](x, a, e, pads[0][0], pads[1][0], th, tw, V,
                          *terms("input", x.dtype))
            kern["grad"](dz, 0, e - a, th, tw, D, *terms("grad", x.dtype))
            _products(V, D, P, transpose=True)
            dU[tiling.group_of(a // tiling.per_chunk)] += P
            if need_dx:
                tb = (e - a) * bh * bw
                V2 = _scratch("V2", (16, tb, k), x.dtype)
                M2 = _scratch("M2", (16, tb, c), x.dtype)
                kern["input"](dz, 0, e - a, back_pads[0], back_pads[1], bh, bw, V2,
                              *terms("input", x.dtype))
                _products(V2, Uf, M2)
                kern["output"](M2, 0, e - a, bh, bw, dx[a:e], zeros, False, False,
                               *terms("output", x.dtype))

    tiling.run(part)
    dW = kernel_gradient(dU.sum(axis=0))
    return dx, dW, (db.sum(axis=0) if need_db else None)
