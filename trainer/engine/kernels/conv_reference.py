"""Plain-loop reference versions of the convolution and pooling kernels.

Slow and obvious, written from the definitions (TensorFlow padding, NHWC); the
tests compare the fast im2col/strided kernels and layers with these.
"""

import numpy as np

from trainer.engine.kernels.conv import out_size


def _pads(shape, kernel, strides, dilation, padding):
    sizes = [out_size(shape[1 + a], kernel[a], strides[a], dilation[a], padding)
             for a in range(2)]
    return [s[0] for s in sizes], [s[1] for s in sizes]


def conv2d(x, W, b, strides=(1, 1), padding="valid", dilation=(1, 1)):
    """y[n,i,j,f] = b[f] + Σ x[n, i·s - pt + p·d, j·s - pl + q·d, c] · W[p,q,c,f]."""
    n, h, w, c = x.shape
    kh, kw, _, f = W.shape
    (ho, wo), (pt, pl) = _pads(x.shape, (kh, kw), strides, dilation, padding)
    y = np.zeros((n, ho, wo, f), dtype=np.float64)
    for i in range(ho):
        for j in range(wo):
            for p in range(kh):
                for q in range(kw):
                    r = i * strides[0] - pt + p * dilation[0]
                    s = j * strides[1] - pl + q * dilation[1]
                    if 0 <= r < h and 0 <= s < w:
                        y[:, i, j, :] += x[:, r, s, :] @ W[p, q]
    return y + (0 if b is None else b)


def depthwise2d(x, W, strides=(1, 1), padding="valid", dilation=(1, 1)):
    """W (kh, kw, C, M); output channel c·M + m, as TensorFlow."""
    n, h, w, c = x.shape
    kh, kw, _, m = W.shape
    (ho, wo), (pt, pl) = _pads(x.shape, (kh, kw), strides, dilation, padding)
    y = np.zeros((n, ho, wo, c, m))
    for i in range(ho):
        for j in range(wo):
            for p in range(kh):
                for q in range(kw):
                    r = i * strides[0] - pt + p * dilation[0]
                    s = j * strides[1] - pl + q * dilation[1]
                    if 0 <= r < h and 0 <= s < w:
                        y[:, i, j] += x[:, r, s, :, None] * W[p, q]
    return y.reshape(n, ho, wo, c * m)


def conv2d_transpose(x, W, strides=(1, 1), padding="valid", out_hw=None):
    """The gradient of conv2d wrt its input: W (kh, kw, out, in); scatter each input
    pixel's kernel-weighted copy into the output, then crop TensorFlow's padding."""
    n, h, w, _ = x.shape
    kh, kw, f, _ = W.shape
    full_h, full_w = (h - 1) * strides[0] + kh, (w - 1) * strides[1] + kw
    ho, wo = out_hw
    pt = max(full_h - ho, 0) // 2 if padding == "same" else 0
    pl = max(full_w - wo, 0) // 2 if padding == "same" else 0
    y = np.zeros((n, max(full_h, pt + ho), max(full_w, pl + wo), f))
    for i in range(h):
        for j in range(w):
            for p in range(kh):
                for q in range(kw):
                    y[:, i * strides[0] + p, j * strides[1] + q] += x[:, i, j] @ W[p, q].T
    return y[:, pt:pt + ho, pl:pl + wo]


def pool2d(x, pool, strides, padding, mode):
    """Max or average pooling; 'same' averages over the real cells only."""
    n, h, w, c = x.shape
    (ho, wo), (pt, pl) = _pads(x.shape, pool, strides, (1, 1), padding)
    y = np.zeros((n, ho, wo, c))
    for i in range(ho):
        for j in range(wo):
            r0, s0 = i * strides[0] - pt, j * strides[1] - pl
            win = x[:, max(r0, 0):min(r0 + pool[0], h), max(s0, 0):min(s0 + pool[1], w)]
            y[:, i, j] = win.max(axis=(1, 2)) if mode == "max" else win.mean(axis=(1, 2))
    return y
