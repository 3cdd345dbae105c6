"""The Numba kernels of the direct convolution (trainer/engine/kernels/direct_conv.py,
whose doc describes them). A module of its own, imported on first use: module-level
functions cache on disk (a closure's compiled code is looked up by its cells, which
differ from process to process)."""

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: output pixels (along a row) × output channels of one register block; taps of one
#: weight-gradient block (the literal 32 in ``stack(32, ...)`` below is FB)
PB = 8
FB = 32
KB = 8


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

#: the last two arguments (``narrow``, ``wide``) of ``forward``, ``forward_chain`` and
#: ``weight_grad``: which register block runs, the AVX2 one (3 pixels × 32 channels,
#: the ``*_narrow`` kernels) or the AVX-512 one (8 × 32). The one not taken is None, not
#: False: Numba drops a branch that tests a None argument before it compiles anything,
#: so a machine compiles only its own block's kernels (the other's cost 2-5 s more of
#: each new cache, per dtype: forward_sample 1.5-2.4 s, grad_sample 1.3-2.0,
#: forward_pool_sample 1.5-1.9, on an AVX2 EPYC)
BLOCK_ARGS = {True: (True, None), False: (None, True)}  # by "narrow"


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
def pixel_offsets(ho, wo, ps, rs):
    """The input offset of every output pixel (row-major): ``(m // wo)·rs + (m % wo)·ps``
    once per call, so that a block reads its 8 offsets instead of dividing (8 integer
    divisions a block cost conv1, whose K = 27 taps make a short block)."""
    out = np.empty(ho * wo, np.uint64)
    for i in range(ho):
        for j in range(wo):
            out[i * wo + j] = np.uint64(i) * rs + np.uint64(j) * ps
    return out


@jit
def forward_sample(xf, W2, bias, lo, toff, poff, out):
    """out (ho, wo, F) = max(lo, conv + bias) of one flat padded sample ``xf``;
    ``poff``: the input offset of each output pixel (``pixel_offsets``). Blocks of PB
    pixels run over the output in row-major order (across row ends: a block's pixels
    each have their own input offset), the last one moved back to end at the last
    pixel."""
    ho, wo, f = out.shape
    M = ho * wo
    o = out.reshape(M, f)
    K = W2.shape[0]
    a0 = numba.carray(stack(32, xf.dtype), (FB,))
    a1 = numba.carray(stack(32, xf.dtype), (FB,))
    a2 = numba.carray(stack(32, xf.dtype), (FB,))
    a3 = numba.carray(stack(32, xf.dtype), (FB,))
    a4 = numba.carray(stack(32, xf.dtype), (FB,))
    a5 = numba.carray(stack(32, xf.dtype), (FB,))
    a6 = numba.carray(stack(32, xf.dtype), (FB,))
    a7 = numba.carray(stack(32, xf.dtype), (FB,))
    for mb in range(0, M, PB):
        m0 = max(min(mb, M - PB), 0)
        b0, b1, b2, b3 = poff[m0], poff[m0 + 1], poff[m0 + 2], poff[m0 + 3]
        b4, b5, b6, b7 = poff[m0 + 4], poff[m0 + 5], poff[m0 + 6], poff[m0 + 7]
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
                t = toff[k]
                x0, x1, x2, x3 = xf[b0 + t], xf[b1 + t], xf[b2 + t], xf[b3 + t]
                x4, x5, x6, x7 = xf[b4 + t], xf[b5 + t], xf[b6 + t], xf[b7 + t]
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
                o[m0, f0 + ff] = lo if v < lo else v
                v = a1[ff] + bv
                o[m0 + 1, f0 + ff] = lo if v < lo else v
                v = a2[ff] + bv
                o[m0 + 2, f0 + ff] = lo if v < lo else v
                v = a3[ff] + bv
                o[m0 + 3, f0 + ff] = lo if v < lo else v
                v = a4[ff] + bv
                o[m0 + 4, f0 + ff] = lo if v < lo else v
                v = a5[ff] + bv
                o[m0 + 5, f0 + ff] = lo if v < lo else v
                v = a6[ff] + bv
                o[m0 + 6, f0 + ff] = lo if v < lo else v
                v = a7[ff] + bv
                o[m0 + 7, f0 + ff] = lo if v < lo else v


@jit
def pool_offsets(hq, wq, ps, rs):
    """The input offset of the top-left convolution pixel of every pooled pixel of a
    2×2 stride-2 max pool (row-major): ``2(m // wq)·rs + 2(m % wq)·ps``."""
    out = np.empty(hq * wq, np.uint64)
    for i in range(hq):
        for j in range(wq):
            out[i * wq + j] = np.uint64(2 * i) * rs + np.uint64(2 * j) * ps
    return out


@jit
def forward_pool_sample(xf, W2, bias, lo, toff, qoff, ps, rs, out):
    """out (hq, wq, F) = the 2×2 stride-2 max pool of max(lo, conv + bias) of one flat
    padded sample, the convolution's output never stored: blocks of 2 pooled pixels
    (consecutive in row-major order, across row ends; the last one moved back) are
    8 convolution pixels × FB channels, forward_sample's block with other offsets
    (``qoff``: pool_offsets; the window's pixels at + 0, ps, rs, rs + ps). Each
    convolution output is the same operations in the same order as forward_sample's,
    and the window's maximum is taken in the pool kernel's order ((0, 0), (0, 1),
    (1, 0), (1, 1), ``v > best`` keeping the first maximum or a NaN found first): the
    same bits as the convolution then trainer/engine/kernels/pool.py's max pool."""
    hq, wq, f = out.shape
    M = hq * wq
    o = out.reshape(M, f)
    K = W2.shape[0]
    a0 = numba.carray(stack(32, xf.dtype), (FB,))
    a1 = numba.carray(stack(32, xf.dtype), (FB,))
    a2 = numba.carray(stack(32, xf.dtype), (FB,))
    a3 = numba.carray(stack(32, xf.dtype), (FB,))
    a4 = numba.carray(stack(32, xf.dtype), (FB,))
    a5 = numba.carray(stack(32, xf.dtype), (FB,))
    a6 = numba.carray(stack(32, xf.dtype), (FB,))
    a7 = numba.carray(stack(32, xf.dtype), (FB,))
    for mb in range(0, M, 2):
        m0 = max(min(mb, M - 2), 0)
        b0 = qoff[m0]
        b1, b2, b3 = b0 + ps, b0 + rs, b0 + rs + ps
        b4 = qoff[m0 + 1]
        b5, b6, b7 = b4 + ps, b4 + rs, b4 + rs + ps
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
                t = toff[k]
                x0, x1, x2, x3 = xf[b0 + t], xf[b1 + t], xf[b2 + t], xf[b3 + t]
                x4, x5, x6, x7 = xf[b4 + t], xf[b5 + t], xf[b6 + t], xf[b7 + t]
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
            for ff in range(FB):
                bv = bias[f0 + ff]
                v = a0[ff] + bv
                best = lo if v < lo else v
                v = a1[ff] + bv
                v = lo if v < lo else v
                best = v if v > best else best
                v = a2[ff] + bv
                v = lo if v < lo else v
                best = v if v > best else best
                v = a3[ff] + bv
                v = lo if v < lo else v
                best = v if v > best else best
                o[m0, f0 + ff] = best
                v = a4[ff] + bv
                best = lo if v < lo else v
                v = a5[ff] + bv
                v = lo if v < lo else v
                best = v if v > best else best
                v = a6[ff] + bv
                v = lo if v < lo else v
                best = v if v > best else best
                v = a7[ff] + bv
                v = lo if v < lo else v
                best = v if v > best else best
                o[m0 + 1, f0 + ff] = best


#: the AVX2 block (direct_conv.wide_vectors() false): NPB output pixels × NFB channels
#: (12 ymm accumulators; the literal 32 in ``stack(32, ...)`` is NFB), NKB taps × NFB
#: channels for the weight gradient
NPB = 3
NFB = 32
NKB = 3


@jit
def forward_sample_narrow(xf, W2, bias, lo, toff, ps, rs, out):
    """forward_sample with the AVX2 block (NPB pixels × NFB channels): each output the
    same operations in the same order, so the same bits."""
    ho, wo, f = out.shape
    M = ho * wo
    o = out.reshape(M, f)
    K = W2.shape[0]
    a0 = numba.carray(stack(32, xf.dtype), (NFB,))
    a1 = numba.carray(stack(32, xf.dtype), (NFB,))
    a2 = numba.carray(stack(32, xf.dtype), (NFB,))
    for mb in range(0, M, NPB):
        m0 = max(min(mb, M - NPB), 0)
        b0 = np.uint64((m0 + 0) // wo) * rs + np.uint64((m0 + 0) % wo) * ps
        b1 = np.uint64((m0 + 1) // wo) * rs + np.uint64((m0 + 1) % wo) * ps
        b2 = np.uint64((m0 + 2) // wo) * rs + np.uint64((m0 + 2) % wo) * ps
        for fb in range(0, f, NFB):
            f0 = max(min(fb, f - NFB), 0)
            for ff in range(NFB):
                a0[ff] = 0
                a1[ff] = 0
                a2[ff] = 0
            for k in range(K):
                t = toff[k]
                x0 = xf[b0 + t]
                x1 = xf[b1 + t]
                x2 = xf[b2 + t]
                w = W2[k]
                for ff in range(NFB):
                    wv = w[f0 + ff]
                    a0[ff] += x0 * wv
                    a1[ff] += x1 * wv
                    a2[ff] += x2 * wv
            for ff in range(NFB):
                bv = bias[f0 + ff]
                v = a0[ff] + bv
                o[m0 + 0, f0 + ff] = lo if v < lo else v
                v = a1[ff] + bv
                o[m0 + 1, f0 + ff] = lo if v < lo else v
                v = a2[ff] + bv
                o[m0 + 2, f0 + ff] = lo if v < lo else v


@jit
def padded_one(a, pt, pl, buf):
    """One sample ``a`` (H, W, C) as a flat array: itself, or copied into the
    zero-bordered ``buf`` (whose border the caller zeroed)."""
    h, w, c = a.shape
    if buf.shape[0] == h and buf.shape[1] == w:
        return a.reshape(-1)
    # element by element: a slice assignment (buf[pt:pt + h, pl:pl + w] = a) brings in
    # Numba's shape-mismatch message, whose string formatting took ~6 s of compile
    # in each new cache (per dtype), more than the rest of this kernel
    for i in range(h):
        for j in range(w):
            for ch in range(c):
                buf[pt + i, pl + j, ch] = a[i, j, ch]
    return buf.reshape(-1)


@jit
def padded_sample(x, s, pt, pl, buf):
    """Sample s of x as a flat array: itself, or copied into the zero-bordered
    ``buf`` (whose border the caller zeroed)."""
    return padded_one(x[s], pt, pl, buf)


@jit
def forward(x, W2, bias, lo, pt, pl, kh, kw, sh, sw, dh, dw, buf, out, narrow, wide):
    """out[s] for every sample s of x (N, H, W, C); buf (Hp, Wp, C) scratch; the AVX2
    block or the AVX-512 one (``narrow``, ``wide``: see ``BLOCK_ARGS``)."""
    c = x.shape[3]
    wp = buf.shape[1]
    buf[:] = 0
    toff = taps(kh, kw, c, dh, dw, wp)
    ps, rs = np.uint64(sw * c), np.uint64(sh * wp * c)
    poff = np.empty(0, np.uint64)  # the AVX-512 block's pixel offsets only
    if wide is not None:
        poff = pixel_offsets(out.shape[1], out.shape[2], ps, rs)
    for s in range(x.shape[0]):
        xf = padded_sample(x, s, pt, pl, buf)
        if narrow is not None:
            forward_sample_narrow(xf, W2, bias, lo, toff, ps, rs, out[s])
        if wide is not None:
            forward_sample(xf, W2, bias, lo, toff, poff, out[s])


#: the columns of forward_chain's ``geo`` table, one row a stage
(G_PT, G_PL, G_KH, G_KW, G_SH, G_SW, G_DH, G_DW, G_POOL, G_C, G_HP, G_WP, G_HO, G_WO,
 G_F, G_W, G_B, G_BUF, G_MID) = range(19)


@jit
def forward_chain(x, Wf, bf, los, geo, bufs, mids, out, narrow, wide):
    """out[s] for every sample s of x: the stages of ``geo`` (one row each, columns
    ``G_*``) run one after the other on one sample before the next, each stage's
    output (``mids``, flat scratch) the next one's input, so that a sample's
    activations stay in cache. Stage i: the convolution with the weights
    ``Wf[G_W:]`` (K, F) and bias ``bf[G_B:]`` of its input padded into ``bufs[G_BUF:]``
    (Hp, Wp, C), then max(lo, ·), then (G_POOL) its 2×2 stride-2 max pool: the same
    kernels, so the same bits, as the stages run one by one over the batch. With
    ``narrow`` (the AVX2 block) a pooled stage computes only the output pixels its pool
    reads (2⌊H'/2⌋ × 2⌊W'/2⌋) into a scratch of the sample's, then pools them in
    pool.py's order (``pool_sample``). ``narrow``, ``wide``: see ``BLOCK_ARGS``."""
    S = geo.shape[0]
    toffs = []
    offs = []
    unpooled = 0  # the largest pooled stage's output before its pool (narrow)
    for i in range(S):
        g = geo[i]
        ps, rs = np.uint64(g[G_SW] * g[G_C]), np.uint64(g[G_SH] * g[G_WP] * g[G_C])
        toffs.append(taps(g[G_KH], g[G_KW], g[G_C], g[G_DH], g[G_DW], g[G_WP]))
        if narrow is not None:
            offs.append(np.empty(0, np.uint64))
            if g[G_POOL]:
                unpooled = max(unpooled, (g[G_HO] // 2) * (g[G_WO] // 2) * 4 * g[G_F])
        elif g[G_POOL]:
            offs.append(pool_offsets(g[G_HO] // 2, g[G_WO] // 2, ps, rs))
        else:
            offs.append(pixel_offsets(g[G_HO], g[G_WO], ps, rs))
    before_pool = np.empty(max(unpooled, 1), x.dtype)
    bufs[:] = 0
    for s in range(x.shape[0]):
        prev = x[s]
        for i in range(S):
            g = geo[i]
            c, hp, wp, f = g[G_C], g[G_HP], g[G_WP], g[G_F]
            buf = bufs[g[G_BUF]:g[G_BUF] + hp * wp * c].reshape(hp, wp, c)
            xf = padded_one(prev, g[G_PT], g[G_PL], buf)
            K = g[G_KH] * g[G_KW] * c
            W2 = Wf[g[G_W]:g[G_W] + K * f].reshape(K, f)
            bias = bf[g[G_B]:g[G_B] + f]
            oh, ow = g[G_HO], g[G_WO]
            if g[G_POOL]:
                oh, ow = oh // 2, ow // 2
            if i == S - 1:
                dst = out[s]
            else:
                dst = mids[g[G_MID]:g[G_MID] + oh * ow * f].reshape(oh, ow, f)
            ps, rs = np.uint64(g[G_SW] * c), np.uint64(g[G_SH] * wp * c)
            if narrow is not None:
                if g[G_POOL]:
                    z = before_pool[:4 * oh * ow * f].reshape(2 * oh, 2 * ow, f)
                    forward_sample_narrow(xf, W2, bias, los[i], toffs[i], ps, rs, z)
                    pool_sample(z, dst)
                else:
                    forward_sample_narrow(xf, W2, bias, los[i], toffs[i], ps, rs, dst)
            if wide is not None:
                if g[G_POOL]:
                    forward_pool_sample(xf, W2, bias, los[i], toffs[i], offs[i], ps, rs,
                                        dst)
                else:
                    forward_sample(xf, W2, bias, los[i], toffs[i], offs[i], dst)
            prev = dst


@jit
def pool_sample(z, out):
    """out (H, W, F) = the 2×2 stride-2 max pool of z (2H, 2W, F), by pool.py's
    comparisons in its order (forward_max: the window's first value, then each of the
    four in row-major order replaces the maximum where greater): the same maxima.
    pool.py's kernels are closures compiled in its ``_compile``, which compiled code
    here cannot call, hence these few lines again."""
    ho, wo, f = out.shape
    for i in range(ho):
        for j in range(wo):
            o = out[i, j]
            for ch in range(f):
                o[ch] = z[2 * i, 2 * j, ch]
            for p in range(2):
                for q in range(2):
                    r = z[2 * i + p, 2 * j + q]
                    for ch in range(f):
                        v = r[ch]
                        o[ch] = v if v > o[ch] else o[ch]


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
def grad_sample_narrow(xf, dz, toff, ps, rs, g):
    """grad_sample with the AVX2 block (NKB taps × NFB channels), the same bits."""
    ho, wo, f = dz.shape
    K = toff.size
    dzf = dz.reshape(ho * wo, f)
    a0 = numba.carray(stack(32, xf.dtype), (NFB,))
    a1 = numba.carray(stack(32, xf.dtype), (NFB,))
    a2 = numba.carray(stack(32, xf.dtype), (NFB,))
    for kb in range(0, K, NKB):
        k0 = max(min(kb, K - NKB), 0)
        t0 = toff[k0 + 0]
        t1 = toff[k0 + 1]
        t2 = toff[k0 + 2]
        for fb in range(0, f, NFB):
            f0 = max(min(fb, f - NFB), 0)
            for ff in range(NFB):
                a0[ff] = 0
                a1[ff] = 0
                a2[ff] = 0
            for i in range(ho):
                for j in range(wo):
                    b = np.uint64(i) * rs + np.uint64(j) * ps
                    x0 = xf[b + t0]
                    x1 = xf[b + t1]
                    x2 = xf[b + t2]
                    d = dzf[i * wo + j]
                    for ff in range(NFB):
                        dv = d[f0 + ff]
                        a0[ff] += x0 * dv
                        a1[ff] += x1 * dv
                        a2[ff] += x2 * dv
            for ff in range(NFB):
                g[k0 + 0, f0 + ff] = a0[ff]
                g[k0 + 1, f0 + ff] = a1[ff]
                g[k0 + 2, f0 + ff] = a2[ff]


@jit
def weight_grad(x, dy, y, relu, pt, pl, kh, kw, sh, sw, dh, dw, buf, dz, g, dW, db,
                narrow, wide):
    """dW (K, F) and db (F) of the samples of x: per sample dz = dy·(y > 0) (relu,
    into the scratch ``dz``) or dy itself, its db and its g, added in sample order;
    the AVX2 block or the AVX-512 one (``narrow``, ``wide``: see ``BLOCK_ARGS``)."""
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
        d = dy[s]
        if relu:
            d = dz
            dzs = dz.reshape(-1, f)
            ys = y[s].reshape(-1, f)
            for r in range(dys.shape[0]):
                for ff in range(f):
                    # dy·(y > 0): a NaN/inf gradient times 0 stays NaN, as NumPy
                    dzs[r, ff] = dys[r, ff] if ys[r, ff] > 0 else dys[r, ff] * 0
        ds = d.reshape(-1, f)
        for r in range(ds.shape[0]):
            for ff in range(f):
                db[ff] += ds[r, ff]
        xf = padded_sample(x, s, pt, pl, buf)
        if narrow is not None:
            grad_sample_narrow(xf, d, toff, ps, rs, g)
        if wide is not None:
            grad_sample(xf, d, toff, ps, rs, g)
        for k in range(g.shape[0]):
            for ff in range(f):
                dW[k, ff] += g[k, ff]
