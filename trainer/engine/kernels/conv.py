"""Convolution as im2col + one GEMM, channels-last (NHWC).

Output sizes and TensorFlow's padding live in one helper (``out_size``); the input
is padded once; patches are a strided view of it, copied once into the GEMM's
column matrix; the backward pass scatters column gradients back with one strided
add per kernel offset (``col2im``).
"""

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided


def out_size(n, k, stride=1, dilation=1, padding="valid"):
    """(output length, pad before, pad after) of one spatial axis, as TensorFlow.

    ``same``: out = ceil(n / stride), the odd pad goes after (bottom/right);
    ``valid``: out = floor((n - k_eff) / stride) + 1; ``causal``: all pad before.
    ``n`` may be None (unknown): the output length is then None too.
    """
    k_eff = (k - 1) * dilation + 1
    if n is None:
        return None, 0, 0
    if padding == "valid":
        return (n - k_eff) // stride + 1, 0, 0
    if padding == "causal":
        return (n - 1) // stride + 1, k_eff - 1, 0
    out = math.ceil(n / stride)
    total = max((out - 1) * stride + k_eff - n, 0)
    return out, total // 2, total - total // 2


def transpose_out_size(n, k, stride=1, dilation=1, padding="valid"):
    """Conv2DTranspose: (output length, crop before) — the conv whose input is ours."""
    k_eff = (k - 1) * dilation + 1
    full = (n - 1) * stride + k_eff
    if padding == "valid":  # Keras: n·stride + max(k - stride, 0), zeros past the full scatter
        return n * stride + max(k_eff - stride, 0), 0
    out = n * stride
    total = max(full - out, 0)
    return out, total // 2


def padded_shape(shape, pads):
    (t, b), (l, r) = pads
    n, h, w, c = shape
    return (n, h + t + b, w + l + r, c)


def pad2d(x, pads, value=0.0, out=None):
    """Pad axes 1 and 2 of an NHWC array: pads = ((top, bottom), (left, right)).
    ``out`` (optional) is a reused buffer of the padded shape; only its border and
    interior are written."""
    (t, b), (l, r) = pads
    if not (t or b or l or r):
        return x
    n, h, w, c = x.shape
    if out is None:
        out = np.empty(padded_shape(x.shape, pads), dtype=x.dtype)
    out[:, :t] = value
    out[:, t + h:] = value
    out[:, t:t + h, :l] = value
    out[:, t:t + h, l + w:] = value
    out[:, t:t + h, l:l + w, :] = x
    return out


def patches(xp, kernel, strides, dilation, out_hw):
    """Strided view (N, Ho, Wo, kh, kw, C) of a padded NHWC input; no copy."""
    n, _, _, c = xp.shape
    sn, sh, sw, sc = xp.strides
    return as_strided(
        xp,
        shape=(n, out_hw[0], out_hw[1], kernel[0], kernel[1], c),
        strides=(sn, sh * strides[0], sw * strides[1], sh * dilation[0], sw * dilation[1], sc),
        writeable=False,
    )


def im2col(xp, kernel, strides, dilation, out_hw, out=None):
    """Column matrix (N·Ho·Wo, kh·kw·C): the one copy of the forward pass."""
    view = patches(xp, kernel, strides, dilation, out_hw)
    n, ho, wo, kh, kw, c = view.shape
    if out is None:
        out = np.empty((n, ho, wo, kh, kw, c), dtype=xp.dtype)
    else:
        out = out.reshape(n, ho, wo, kh, kw, c)
    np.copyto(out, view)
    return out.reshape(n * ho * wo, kh * kw * c)


def col2im(cols, padded_shape, kernel, strides, dilation, out_hw, out=None):
    """Adjoint of ``im2col``: add column gradients back into a padded input."""
    n, hp, wp, c = padded_shape
    ho, wo = out_hw
    kh, kw = kernel
    sh, sw = strides
    dh, dw = dilation
    cols = cols.reshape(n, ho, wo, kh, kw, c)
    if out is None:
        out = np.zeros(padded_shape, dtype=cols.dtype)
    else:
        out.fill(0)
    for i in range(kh):
        for j in range(kw):
            out[:, i * dh:i * dh + sh * (ho - 1) + 1:sh,
                j * dw:j * dw + sw * (wo - 1) + 1:sw, :] += cols[:, :, :, i, j, :]
    return out


def crop2d(x, pads):
    """Inverse of ``pad2d`` (a view)."""
    (t, b), (l, r) = pads
    return x[:, t:x.shape[1] - b, l:x.shape[2] - r, :]


def plan2d(hw, kernel, strides, dilation, padding):
    """Output (Ho, Wo) and pads ((top, bottom), (left, right)) of a 2-D window op."""
    sizes = [out_size(hw[a], kernel[a], strides[a], dilation[a], padding) for a in range(2)]
    return (sizes[0][0], sizes[1][0]), ((sizes[0][1], sizes[0][2]), (sizes[1][1], sizes[1][2]))
