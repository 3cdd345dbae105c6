"""The three data transforms of Winograd F(2×2, 3×3) in Numba, written out by hand.

Each works on one tile at a time and runs its loop over the channels (the contiguous
axis of NHWC arrays and of the transformed (16, tiles, channels) arrays) innermost,
with the transform's additions spelled out (its coefficients are 0 and ±1 only). The
earlier generic form walked a table of (row, column, coefficient) terms per tile;
against it, in one process, interleaved (one thread, CPU time, the classic CNN's
Winograd-able shapes, batch 64, 5 pairs, load ~3 so the ranges are wide): input
transform 1.1-1.7× faster (medians per shape; range 1.0-2.1), output 2.4-2.8×,
gradient about even (0.91-1.10). Only the output transform's channel loop vectorises:
with 16 rows written per tile LLVM does not vectorise the input and gradient loops;
writing them through a fresh local (16, c) block first (which LLVM may vectorise)
measured 0.73-1.0× the old form, and through fixed 16-wide local blocks (vectorised)
0.4-0.8×: the per-tile copy loops cost more than the arithmetic.

    input   V = Bᵀ d B   of a 4×4 input window d (rows 2i - pt + a, zeros off the image)
    output  y = Aᵀ m A   of a tile's 16 products m (+ bias, relu), cut at the edge
    grad    D = A g Aᵀ   of a 2×2 output-gradient tile g (zeros past the edge)

    kernel  U = G g Gᵀ   of each 3×3 kernel (c, k), and its adjoint dW = Gᵀ dU G

with Bᵀ = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]], Aᵀ = [[1,1,1,0],[0,1,-1,-1]]
(the matrices in winograd.py, which the tests check these against). The input and
gradient transforms also come as ``*_at`` (writing from tile ``t0`` on: the backward
fills one block's slabs chunk by chunk). Compiled on first use and cached on disk:
the jitted functions are module-level functions of winograd_kernels.py (defined inside
a function, the ones calling another missed Numba's cache in every process).

Layout: a transformed array (V, M, D) is (16, rows, channels) with rows the tile count
rounded up to odd (``slab_rows``; the kernels use the first ``tiles`` rows). Each tile
writes (or reads) one row in each of the 16 slabs; with a slab a multiple of 4 KiB
(e.g. 640 tiles × 32 channels × 4 bytes) those 16 rows fall into one L1 set and evict
each other — measured 4-7× slower transforms on such shapes. An odd row count spreads
them over 16 sets.
"""

_KERNELS = None


def _compile():
    from trainer.engine.kernels import winograd_kernels

    return dict(winograd_kernels.KERNELS)


def slab_rows(tiles):
    """Rows of a transformed array's slabs for ``tiles`` tiles (module doc)."""
    return tiles | 1


def kernels():
    """{"input", "input_at", "output", "grad", "grad_at", "kernel", "kernel_grad"}: the
    compiled transforms (module doc; ``*_at`` write from a given tile on)."""
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _compile()
    return _KERNELS
