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

Work goes in chunks of a few samples sized so that one chunk's transformed arrays stay
in cache (``CHUNK_BYTES``); chunks are fixed by the shapes alone and fall into at most
``GROUPS`` groups, each summing its chunks' ``dU`` in order, the groups then summed in
order: every number is the same whatever the number of threads. Transform buffers
are per thread and reused from call to call.

Float32 accuracy: the F(2×2,3×3) transforms use only ±1 and 0.5 (exact in binary), so
its error is that of a few more additions: tests hold it to rtol 1e-4 of the im2col
path. F(4×4,3×3) (4× fewer multiplies) has transforms with 1/6, 1/24 and 2, 4, 8 and
lost ~2 more decimal digits in float32 (see benchmarks/README.md): not used.

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

#: bytes of one chunk's transform buffers (all four of the backward pass)
CHUNK_BYTES = 2 << 20
#: the dW partial sums: at most this many groups of chunks (module doc)
GROUPS = 8
#: fewer input channels than this stay on im2col (the transforms dominate)
MIN_CHANNELS = 16
ALGOS = ("auto", "winograd", "im2col")

_KERNELS = None
_local = threading.local()


def algo():
    """The ``TRAINER_CONV_ALGO`` setting (module doc)."""
    value = os.environ.get("TRAINER_CONV_ALGO", "auto").strip().lower() or "auto"
    if value not in ALGOS:
        raise ValueError(f"TRAINER_CONV_ALGO: expected one of {', '.join(ALGOS)}, "
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


def _compile():
    import numba

    @numba.njit(cache=True, nogil=True)
    def input_transform(x, n0, n1, pt, pl, th, tw, V):
        """V[p, t, c] = (Bᵀ d B)[p] of tile t's 4×4 window d (rows 2i - pt + a)."""
        _, h, w, c = x.shape
        d = np.zeros((4, 4, c), x.dtype)
        t = 0
        for n in range(n0, n1):
            for ti in range(th):
                r0 = 2 * ti - pt
                for tj in range(tw):
                    s0 = 2 * tj - pl
                    for a in range(4):
                        r = r0 + a
                        for b in range(4):
                            s = s0 + b
                            if 0 <= r < h and 0 <= s < w:
                                for k in range(c):
                                    d[a, b, k] = x[n, r, s, k]
                            else:
                                for k in range(c):
                                    d[a, b, k] = 0
                    for k in range(c):
                        # Bᵀ d: rows
                        u00 = d[0, 0, k] - d[2, 0, k]
                        u01 = d[0, 1, k] - d[2, 1, k]
                        u02 = d[0, 2, k] - d[2, 2, k]
                        u03 = d[0, 3, k] - d[2, 3, k]
                        u10 = d[1, 0, k] + d[2, 0, k]
                        u11 = d[1, 1, k] + d[2, 1, k]
                        u12 = d[1, 2, k] + d[2, 2, k]
                        u13 = d[1, 3, k] + d[2, 3, k]
                        u20 = d[2, 0, k] - d[1, 0, k]
                        u21 = d[2, 1, k] - d[1, 1, k]
                        u22 = d[2, 2, k] - d[1, 2, k]
                        u23 = d[2, 3, k] - d[1, 3, k]
                        u30 = d[1, 0, k] - d[3, 0, k]
                        u31 = d[1, 1, k] - d[3, 1, k]
                        u32 = d[1, 2, k] - d[3, 2, k]
                        u33 = d[1, 3, k] - d[3, 3, k]
                        # (Bᵀ d) B: columns
                        V[0, t, k] = u00 - u02
                        V[1, t, k] = u01 + u02
                        V[2, t, k] = u02 - u01
                        V[3, t, k] = u01 - u03
                        V[4, t, k] = u10 - u12
                        V[5, t, k] = u11 + u12
                        V[6, t, k] = u12 - u11
                        V[7, t, k] = u11 - u13
                        V[8, t, k] = u20 - u22
                        V[9, t, k] = u21 + u22
                        V[10, t, k] = u22 - u21
                        V[11, t, k] = u21 - u23
                        V[12, t, k] = u30 - u32
                        V[13, t, k] = u31 + u32
                        V[14, t, k] = u32 - u31
                        V[15, t, k] = u31 - u33
                    t += 1

    @numba.njit(cache=True, nogil=True)
    def output_transform(M, n0, n1, th, tw, z, bias, add_bias, relu):
        """z[n, 2i:2i+2, 2j:2j+2] = Aᵀ m A (+ bias, relu) of tile t's 16 products."""
        _, ho, wo, kk = z.shape
        t = 0
        for n in range(n0, n1):
            for ti in range(th):
                i0 = 2 * ti
                i1 = i0 + 1 < ho
                for tj in range(tw):
                    j0 = 2 * tj
                    j1 = j0 + 1 < wo
                    for k in range(kk):
                        # Aᵀ m: rows
                        s00 = M[0, t, k] + M[4, t, k] + M[8, t, k]
                        s01 = M[1, t, k] + M[5, t, k] + M[9, t, k]
                        s02 = M[2, t, k] + M[6, t, k] + M[10, t, k]
                        s03 = M[3, t, k] + M[7, t, k] + M[11, t, k]
                        s10 = M[4, t, k] - M[8, t, k] - M[12, t, k]
                        s11 = M[5, t, k] - M[9, t, k] - M[13, t, k]
                        s12 = M[6, t, k] - M[10, t, k] - M[14, t, k]
                        s13 = M[7, t, k] - M[11, t, k] - M[15, t, k]
                        y00 = s00 + s01 + s02
                        y01 = s01 - s02 - s03
                        y10 = s10 + s11 + s12
                        y11 = s11 - s12 - s13
                        if add_bias:
                            y00 += bias[k]
                            y01 += bias[k]
                            y10 += bias[k]
                            y11 += bias[k]
                        if relu:  # not (v < 0): NaN stays NaN, as fused.bias_act
                            y00 = 0 if y00 < 0 else y00
                            y01 = 0 if y01 < 0 else y01
                            y10 = 0 if y10 < 0 else y10
                            y11 = 0 if y11 < 0 else y11
                        z[n, i0, j0, k] = y00
                        if j1:
                            z[n, i0, j0 + 1, k] = y01
                        if i1:
                            z[n, i0 + 1, j0, k] = y10
                            if j1:
                                z[n, i0 + 1, j0 + 1, k] = y11
                    t += 1

    @numba.njit(cache=True, nogil=True)
    def grad_transform(dz, n0, n1, th, tw, D):
        """D[p, t, k] = (A g Aᵀ)[p] of tile t's 2×2 output gradient g (zeros past
        the edge of an odd-sized output)."""
        _, ho, wo, kk = dz.shape
        zero = dz.dtype.type(0)
        t = 0
        for n in range(n0, n1):
            for ti in range(th):
                i0 = 2 * ti
                ok_i = i0 + 1 < ho
                i1 = i0 + 1 if ok_i else i0
                for tj in range(tw):
                    j0 = 2 * tj
                    ok_j = j0 + 1 < wo
                    j1 = j0 + 1 if ok_j else j0
                    for k in range(kk):
                        g00 = dz[n, i0, j0, k]
                        g01 = dz[n, i0, j1, k] if ok_j else zero
                        g10 = dz[n, i1, j0, k] if ok_i else zero
                        g11 = dz[n, i1, j1, k] if ok_i and ok_j else zero
                        # A g: rows (g0, g0 + g1, g0 - g1, -g1)
                        r20, r21 = g00 + g10, g01 + g11
                        r30, r31 = g00 - g10, g01 - g11
                        # (A g) Aᵀ: columns (u0, u0 + u1, u0 - u1, -u1)
                        D[0, t, k] = g00
                        D[1, t, k] = g00 + g01
                        D[2, t, k] = g00 - g01
                        D[3, t, k] = -g01
                        D[4, t, k] = r20
                        D[5, t, k] = r20 + r21
                        D[6, t, k] = r20 - r21
                        D[7, t, k] = -r21
                        D[8, t, k] = r30
                        D[9, t, k] = r30 + r31
                        D[10, t, k] = r30 - r31
                        D[11, t, k] = -r31
                        D[12, t, k] = -g10
                        D[13, t, k] = -(g10 + g11)
                        D[14, t, k] = -(g10 - g11)
                        D[15, t, k] = g11
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


class Tiling:
    """How one convolution call walks its batch: tiles per sample, samples per chunk
    (from the shapes alone), chunk groups (fixed: the dW sums do not depend on the
    number of threads)."""

    def __init__(self, n, out_hw, in_hw, channels, filters, itemsize):
        self.n = n
        self.th, self.tw = (out_hw[0] + 1) // 2, (out_hw[1] + 1) // 2
        self.bh, self.bw = (in_hw[0] + 1) // 2, (in_hw[1] + 1) // 2  # dx's tiles
        per_sample = 16 * (self.th * self.tw + self.bh * self.bw) * (
            channels + filters) * itemsize
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
            kern["input"](x, a, e, pt, pl, th, tw, V)
            np.matmul(V, U, out=M)
            kern["output"](M, a, e, th, tw, z, b, bias is not None, relu)

    tiling.run(part)
    return z


def forward(x, W, bias, relu, pads, out_hw):
    """The layer's forward: (z, U, tiling); pads = ((top, bottom), (left, right))."""
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
            kern["input"](x, a, e, pads[0][0], pads[1][0], th, tw, V)
            kern["grad"](dz, 0, e - a, th, tw, D)
            np.matmul(V.transpose(0, 2, 1), D, out=P)
            group = next(i for i, (s, f) in enumerate(tiling.groups)
                         if s <= a // tiling.per_chunk < f)
            dU[group] += P
            if need_dx:
                tb = (e - a) * bh * bw
                V2 = _scratch("V2", (16, tb, k), x.dtype)
                M2 = _scratch("M2", (16, tb, c), x.dtype)
                kern["input"](dz, 0, e - a, back_pads[0], back_pads[1], bh, bw, V2)
                np.matmul(V2, Uf, out=M2)
                kern["output"](M2, 0, e - a, bh, bw, dx[a:e], zeros, False, False)

    tiling.run(part)
    dW = kernel_gradient(dU.sum(axis=0))
    return dx, dW, (db.sum(axis=0) if need_db else None)
