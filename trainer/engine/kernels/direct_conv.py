"""Direct 2-D convolution (NHWC) with register blocking, in Numba (issue 28).

For a convolution with few input channels (the first layer of an image model: 3)
im2col + sgemm is a poor GEMM (K = kh·kw·C = 27) behind a copy nine times the input;
this computes the output straight from the (padded) input instead.

Forward, per sample, per output row, per block of ``PB`` = 8 output pixels of the row
× ``FB`` = 32 output channels: 8 × 32 accumulators in fixed-size stack arrays
(``_stack``: an alloca LLVM promotes to registers; 16 zmm registers with AVX-512, 32
ymm with AVX2, some spilled), a loop over the K = kh·kw·C taps loading one weight row
(32 channels, contiguous) and 8 input values (broadcast), 16 vector FMAs; then bias and
relu on the accumulators and one store. The last block of a row (and of the channels)
is moved back to end at the edge (``min(start, size - block)``): it recomputes a few
outputs with the same operations in the same order, so every output has the same bits
whichever block computed it. The generated code (checked with ``inspect_asm`` on this
AVX-512 machine) keeps the 16 accumulators in zmm registers with ``vfmadd231ps``.

Weight gradient (the first layer needs no input gradient): per sample, dz = dy·(y > 0)
(relu fused) into a per-thread buffer while summing db, then per block of ``KB`` = 8
taps × 32 channels, 16 accumulators summed over the sample's output pixels: one dz row
(contiguous) times 8 input values (broadcast) per pixel. Per-sample results are added
to the part's sum in sample order, parts (fixed by the batch size and the machine:
parallel.ranges) in order: the same bits on any thread count.

Sums run over the taps in (p, q, c) order with fused multiply-adds; float32 results
differ from im2col's in the last bits (the tests' tolerance: 1e-5 relative).

Path rule (``use``), by the shape alone: 2-D float32 convolutions with at most
``MAX_CHANNELS`` input channels, at least ``FB`` filters, an output row of at least
``PB`` pixels, and K ≥ ``KB``; in training only where no input gradient is needed
(``TRAINER_CONV_DIRECT``: ``auto`` (default), ``off``, or ``force`` — every shape the
kernel takes; only while ``TRAINER_CONV_ALGO`` is ``auto``). Measured in
benchmarks/README.md ("Direct convolution").
"""

import math
import os
import threading

import numpy as np

from trainer.engine.kernels import parallel

#: output pixels (along a row) × output channels of one register block
PB = 8
FB = 32
#: taps of one weight-gradient block
KB = 8
#: the rule's largest input channel count (see the module doc and benchmarks/README.md)
MAX_CHANNELS = 4
SETTINGS = ("auto", "off", "force")

_KERNELS = None
_local = threading.local()


def setting():
    """The ``TRAINER_CONV_DIRECT`` setting (module doc)."""
    value = os.environ.get("TRAINER_CONV_DIRECT", "auto").strip().lower() or "auto"
    if value not in SETTINGS:
        from trainer.errors import ConfigError

        raise ConfigError(f"TRAINER_CONV_DIRECT: expected one of {', '.join(SETTINGS)}, "
                          f"got {value!r}")
    return value


def eligible(rank, kernel, channels, filters, out_hw, dtype):
    """Whether the blocked kernels compute this convolution (any strides, dilations,
    paddings): 2-D, ≥ FB filters, output rows of ≥ PB pixels, K ≥ KB taps."""
    return (rank == 2 and filters >= FB and out_hw[1] >= PB and out_hw[0] >= 1
            and kernel[0] * kernel[1] * channels >= KB
            and np.dtype(dtype) in (np.float32, np.float64))


def use(rank, kernel, channels, filters, out_hw, dtype, training, input_grad, activation):
    """Whether a Conv layer takes the direct path (module doc: by the shape, never by
    the thread count)."""
    from trainer.engine.kernels import winograd

    if winograd.algo() != "auto":
        return False
    mode = setting()
    if mode == "off" or activation not in ("relu", "linear"):
        return False
    if not eligible(rank, kernel, channels, filters, out_hw, dtype):
        return False
    if training and input_grad:
        return False  # no input gradient kernel: the im2col/Winograd path has one
    return mode == "force" or (channels <= MAX_CHANNELS and np.dtype(dtype) == np.float32)


def _compile():
    import numba
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def stack(typingctx, size, dtype):
        """A pointer to ``size`` (a literal) values of ``dtype`` on the stack: a
        fixed-size alloca, which LLVM keeps in registers when every access has a
        constant offset after unrolling (the blocks below)."""
        if not isinstance(size, types.IntegerLiteral):
            return None

        def codegen(context, builder, signature, args):
            count = context.get_constant(types.intp, size.literal_value)
            return cgutils.alloca_once(builder, context.get_value_type(dtype.dtype),
                                       size=count)
        return types.CPointer(dtype.dtype)(size, dtype), codegen

    jit = numba.njit(cache=True, nogil=True, fastmath={"contract"})

    @jit
    def taps(kh, kw, c, dh, dw, wp):
        """Offsets of the K taps (p, q, c) in a flat padded sample (unsigned: no
        negative-index wrap-around in the hot loops)."""
        out = np.empty(kh * kw * c, np.uint64)
        k = 0
        for p in range(kh):
            for q in range(kw):
                for ch in range(c):
                    out[k] = np.uint64((p * dh * wp + q * dw) * c + ch)
                    k += 1
        return out

    @jit
    def forward_sample(xf, W2, bias, lo, toff, ps, rs, out):
        """out (ho, wo, F) = max(lo, conv + bias) of one flat padded sample ``xf``;
        ``ps``/``rs``: the input offset of one output pixel / row."""
        ho, wo, f = out.shape
        K = W2.shape[0]
        a0 = numba.carray(stack(32, xf.dtype), (FB,))
        a1 = numba.carray(stack(32, xf.dtype), (FB,))
        a2 = numba.carray(stack(32, xf.dtype), (FB,))
        a3 = numba.carray(stack(32, xf.dtype), (FB,))
        a4 = numba.carray(stack(32, xf.dtype), (FB,))
        a5 = numba.carray(stack(32, xf.dtype), (FB,))
        a6 = numba.carray(stack(32, xf.dtype), (FB,))
        a7 = numba.carray(stack(32, xf.dtype), (FB,))
        p1, p2, p3, p4 = ps, np.uint64(2) * ps, np.uint64(3) * ps, np.uint64(4) * ps
        p5, p6, p7 = np.uint64(5) * ps, np.uint64(6) * ps, np.uint64(7) * ps
        for i in range(ho):
            o = out[i]
            for jb in range(0, wo, PB):
                j0 = max(min(jb, wo - PB), 0)
                base = np.uint64(i) * rs + np.uint64(j0) * ps
                for fb in range(0, f, FB):
                    f0 = max(min(fb, f - FB), 0)
                    for ff in range(FB):
                        a0[ff] = 0
                        a1[ff] = 0
                        a2[ff] = 0
                        a3[ff] = 0
                        a4[ff] = 0
                        a5[ff] = 0
                        a6[ff] = 0
                        a7[ff] = 0
                    for k in range(K):
                        t = base + toff[k]
                        x0, x1, x2, x3 = xf[t], xf[t + p1], xf[t + p2], xf[t + p3]
                        x4, x5, x6, x7 = xf[t + p4], xf[t + p5], xf[t + p6], xf[t + p7]
                        w = W2[k]
                        for ff in range(FB):
                            wv = w[f0 + ff]
                            a0[ff] += x0 * wv
                            a1[ff] += x1 * wv
                            a2[ff] += x2 * wv
                            a3[ff] += x3 * wv
                            a4[ff] += x4 * wv
                            a5[ff] += x5 * wv
                            a6[ff] += x6 * wv
                            a7[ff] += x7 * wv
                    # bias, then relu as max(lo, v) keeping NaN (lo = -inf: linear)
                    for ff in range(FB):
                        bv = bias[f0 + ff]
                        v = a0[ff] + bv
                        o[j0, f0 + ff] = lo if v < lo else v
                        v = a1[ff] + bv
                        o[j0 + 1, f0 + ff] = lo if v < lo else v
                        v = a2[ff] + bv
                        o[j0 + 2, f0 + ff] = lo if v < lo else v
                        v = a3[ff] + bv
                        o[j0 + 3, f0 + ff] = lo if v < lo else v
                        v = a4[ff] + bv
                        o[j0 + 4, f0 + ff] = lo if v < lo else v
                        v = a5[ff] + bv
                        o[j0 + 5, f0 + ff] = lo if v < lo else v
                        v = a6[ff] + bv
                        o[j0 + 6, f0 + ff] = lo if v < lo else v
                        v = a7[ff] + bv
                        o[j0 + 7, f0 + ff] = lo if v < lo else v

    @jit
    def padded_sample(x, s, pt, pl, buf):
        """Sample s of x as a flat array: itself, or copied into the zero-bordered
        ``buf`` (whose border the caller zeroed)."""
        _, h, w, _ = x.shape
        if buf.shape[0] == h and buf.shape[1] == w:
            return x[s].reshape(-1)
        buf[pt:pt + h, pl:pl + w] = x[s]
        return buf.reshape(-1)

    @jit
    def forward(x, W2, bias, lo, pt, pl, kh, kw, sh, sw, dh, dw, buf, out):
        """out[s] for every sample s of x (N, H, W, C); buf (Hp, Wp, C) scratch."""
        c = x.shape[3]
        wp = buf.shape[1]
        buf[:] = 0
        toff = taps(kh, kw, c, dh, dw, wp)
        ps, rs = np.uint64(sw * c), np.uint64(sh * wp * c)
        for s in range(x.shape[0]):
            forward_sample(padded_sample(x, s, pt, pl, buf), W2, bias, lo, toff, ps, rs,
                           out[s])

    @jit
    def grad_sample(xf, dz, toff, ps, rs, g):
        """g (K, F) = Σ over output pixels of x-tap × dz (one sample, assigned)."""
        ho, wo, f = dz.shape
        K = toff.size
        dzf = dz.reshape(ho * wo, f)
        a0 = numba.carray(stack(32, xf.dtype), (FB,))
        a1 = numba.carray(stack(32, xf.dtype), (FB,))
        a2 = numba.carray(stack(32, xf.dtype), (FB,))
        a3 = numba.carray(stack(32, xf.dtype), (FB,))
        a4 = numba.carray(stack(32, xf.dtype), (FB,))
        a5 = numba.carray(stack(32, xf.dtype), (FB,))
        a6 = numba.carray(stack(32, xf.dtype), (FB,))
        a7 = numba.carray(stack(32, xf.dtype), (FB,))
        for kb in range(0, K, KB):
            k0 = max(min(kb, K - KB), 0)
            t0, t1, t2, t3 = toff[k0], toff[k0 + 1], toff[k0 + 2], toff[k0 + 3]
            t4, t5, t6, t7 = toff[k0 + 4], toff[k0 + 5], toff[k0 + 6], toff[k0 + 7]
            for fb in range(0, f, FB):
                f0 = max(min(fb, f - FB), 0)
                for ff in range(FB):
                    a0[ff] = 0
                    a1[ff] = 0
                    a2[ff] = 0
                    a3[ff] = 0
                    a4[ff] = 0
                    a5[ff] = 0
                    a6[ff] = 0
                    a7[ff] = 0
                for i in range(ho):
                    for j in range(wo):
                        b = np.uint64(i) * rs + np.uint64(j) * ps
                        x0, x1, x2, x3 = xf[b + t0], xf[b + t1], xf[b + t2], xf[b + t3]
                        x4, x5, x6, x7 = xf[b + t4], xf[b + t5], xf[b + t6], xf[b + t7]
                        d = dzf[i * wo + j]
                        for ff in range(FB):
                            dv = d[f0 + ff]
                            a0[ff] += x0 * dv
                            a1[ff] += x1 * dv
                            a2[ff] += x2 * dv
                            a3[ff] += x3 * dv
                            a4[ff] += x4 * dv
                            a5[ff] += x5 * dv
                            a6[ff] += x6 * dv
                            a7[ff] += x7 * dv
                for ff in range(FB):
                    g[k0, f0 + ff] = a0[ff]
                    g[k0 + 1, f0 + ff] = a1[ff]
                    g[k0 + 2, f0 + ff] = a2[ff]
                    g[k0 + 3, f0 + ff] = a3[ff]
                    g[k0 + 4, f0 + ff] = a4[ff]
                    g[k0 + 5, f0 + ff] = a5[ff]
                    g[k0 + 6, f0 + ff] = a6[ff]
                    g[k0 + 7, f0 + ff] = a7[ff]

    @jit
    def weight_grad(x, dy, y, relu, pt, pl, kh, kw, sh, sw, dh, dw, buf, dz, g, dW, db):
        """dW (K, F) and db (F) of the samples of x: per sample dz = dy·(y > 0) (relu)
        or dy, its db and its g, added in sample order."""
        c = x.shape[3]
        wp = buf.shape[1]
        f = dW.shape[1]
        buf[:] = 0
        toff = taps(kh, kw, c, dh, dw, wp)
        ps, rs = np.uint64(sw * c), np.uint64(sh * wp * c)
        dW[:] = 0
        db[:] = 0
        for s in range(x.shape[0]):
            dys = dy[s].reshape(-1, f)
            dzs = dz.reshape(-1, f)
            if relu:
                ys = y[s].reshape(-1, f)
                for r in range(dys.shape[0]):
                    for ff in range(f):
                        # dy·(y > 0): a NaN/inf gradient times 0 stays NaN, as NumPy
                        dzs[r, ff] = dys[r, ff] if ys[r, ff] > 0 else dys[r, ff] * 0
            else:
                dzs[:] = dys
            for r in range(dzs.shape[0]):
                for ff in range(f):
                    db[ff] += dzs[r, ff]
            grad_sample(padded_sample(x, s, pt, pl, buf), dz, toff, ps, rs, g)
            for k in range(g.shape[0]):
                for ff in range(f):
                    dW[k, ff] += g[k, ff]

    return {"forward": forward, "weight_grad": weight_grad,
            "forward_sample": forward_sample, "grad_sample": grad_sample}


def kernels():
    """The compiled kernels (compiled on first use, cached on disk)."""
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


def _geometry(x, kernel, pads, strides, dilation):
    (pt, pb), (pl, pr) = pads
    n, h, w, c = x.shape
    return (int(pt), int(pl), int(kernel[0]), int(kernel[1]), int(strides[0]),
            int(strides[1]), int(dilation[0]), int(dilation[1]),
            (h + pt + pb, w + pl + pr, c))


def forward(x, W, bias, relu, pads, strides, dilation, out_hw):
    """The convolution of x (N, H, W, C) with W (kh, kw, C, F) plus bias (or None),
    relu applied when asked; ``pads`` ((top, bottom), (left, right)) and ``out_hw`` as
    trainer.engine.kernels.conv.plan2d gives them. Samples split over the engine's
    threads (each output depends on its own sample only)."""
    x = np.ascontiguousarray(x)
    n, f = x.shape[0], W.shape[3]
    W2 = np.ascontiguousarray(W.reshape(-1, f), dtype=x.dtype)
    b = np.zeros(f, x.dtype) if bias is None else np.ascontiguousarray(bias, x.dtype)
    lo = x.dtype.type(0 if relu else -np.inf)
    *geo, padded = _geometry(x, W.shape[:2], pads, strides, dilation)
    z = np.empty((n, *out_hw, f), x.dtype)
    kernel = kernels()["forward"]

    def part(a, e):
        kernel(x[a:e], W2, b, lo, *geo, _scratch("input", padded, x.dtype), z[a:e])

    parallel.run(part, n, min_items=1)
    return z


def weight_grad(x, dy, y, kernel_shape, pads, strides, dilation):
    """(dW (kh, kw, C, F), db (F)) of the convolution of x given the output gradient
    dy; with ``y`` (the relu output) dy is masked by y > 0 first. The batch is cut into
    parts fixed by its size (parallel.ranges), each summed in sample order, the parts'
    sums added in order."""
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(dy, x.dtype)
    relu = y is not None
    y = np.ascontiguousarray(y) if relu else dy
    f = dy.shape[3]
    k = kernel_shape[0] * kernel_shape[1] * x.shape[3]
    *geo, padded = _geometry(x, kernel_shape, pads, strides, dilation)
    kern = kernels()["weight_grad"]

    def part(a, e):
        dW, db = np.empty((k, f), x.dtype), np.empty(f, x.dtype)
        kern(x[a:e], dy[a:e], y[a:e], relu, *geo, _scratch("input", padded, x.dtype),
             _scratch("dz", dy.shape[1:], x.dtype), _scratch("g", (k, f), x.dtype), dW, db)
        return dW, db

    parts = parallel.run(part, x.shape[0], min_items=1)
    dW, db = parts[0]
    for dWp, dbp in parts[1:]:
        dW += dWp
        db += dbp
    return dW.reshape(kernel_shape), db
