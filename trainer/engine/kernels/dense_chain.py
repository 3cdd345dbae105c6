"""Inference of a chain of dense steps (Dense → Dropout → Dense → ... → softmax) as one
run: each block of samples goes through the whole chain before the next, with one
parallel region per call instead of one per layer (trainer/engine/fusion.py makes the
chains where no backward runs; the layers say what their step is).

Why (issue 28, the 784-512-512-10 MLP at batch 1024, 2 threads): inside
``Model.predict_on_batch``'s slices of 512 rows, each Dense cut its rows again into
256-row GEMMs and went through the graph's per-layer bookkeeping; here each block takes
one GEMM per layer, bias and relu in one compiled pass on the fresh product, and a
softmax output its bias and softmax in another (a float32 one of at most 16 units
with its product too: dense_chain_kernels.py): ~5% less CPU per batch than the
layers one by one (in-process, on a loaded machine: benchmarks/README.md); the GEMMs
are the rest. Where one thread's 512-row slice goes (benchmarks/bench_mlp_infer.py
--profile): the 784→512 and 512→512 GEMMs ~1.9 and ~1.2 ms at 205-225 GFLOP/s
(OpenBLAS's rate on this core at any block of 256-1024 rows, either operand order),
the softmax output ~0.07 ms, bias + relu ~0.015 ms a layer, ``Graph.forward``'s
Python ~0.05 ms and ``predict_on_batch``'s ~0.025 ms more.
Smaller blocks do not pay: with 128-row blocks (a block's activations in L2) the GEMMs
ran 8–15% slower, because OpenBLAS packs the kernel again for every call.

Compiled whole (``compiled``): a float32 chain of relu/linear Dense steps (the last
also a softmax) runs each block through every step in one compiled call that calls
OpenBLAS's sgemm itself, and a batch's parts as one Numba parallel region: no Python
and no GIL between the steps, no sleeping pool worker to wake. A chain that is the
whole graph (the MLP) takes the whole batch (``WHOLE_MIN_ROWS``; Model.predict_on_batch
does not slice it first). Either way the same bits.

Parts and blocks are fixed by the shape (``layout``: ``parallel.ranges``' parts, then
blocks of at most ``BLOCK_ROWS`` GEMM rows), never by the thread count, so the numbers
are the same on any number of threads. Each step computes what the layer's own forward computes, in
the same order (``x @ W``, ``+= b`` and relu in place, then the activation), except the
softmax pass (the same operations, the sum in another order); where the rows are cut
differs from running the layers one by one, which changes a product's last bits in
some BLAS kernels (tests/test_dense_chain.py: within rtol 1e-5, atol 1e-6).
"""

import threading

import numpy as np

from trainer.engine.kernels import blas, fused, parallel

#: a part runs the chain on blocks of at most this many rows: the intermediate
#: activations alive are a block's, not the whole batch's (big predict batches), and a
#: block is still big enough for a GEMM (see the module doc)
BLOCK_ROWS = 512
#: rows are cut over the engine's threads in parts of at least this many: a block's,
#: so that ``predict_on_batch``'s 512-row slices of a 1024-row batch run as one block
#: each (at 256, as Dense's own CHUNK_ROWS, they ran as two 256-row blocks)
MIN_ROWS = BLOCK_ROWS
#: a chain that is the whole graph takes the whole batch (not a slice of it: Model.
#: predict_on_batch leaves it whole) and cuts it in parts of at least this many rows,
#: as the model cuts other graphs' batches (Model.PREDICT_MIN_ROWS): a batch of 128 on
#: two threads. Its parts run as one compiled parallel region (``compiled``), cheap
#: enough for small parts
WHOLE_MIN_ROWS = 64


#: a softmax output narrower than this takes its product with the kernel padded with
#: zero columns to this width (OpenBLAS: 512×512 · 512×10 in 94 µs, · 512×16 in 72);
#: in float32, from NARROW_ROWS rows on, product, bias and softmax run as one compiled
#: pass (dense_chain_kernels.narrow_softmax; the MLP's 512→10 softmax step, thread CPU,
#: 15 interleaved pairs, load 3.8: 1.12× faster at 512 rows, pairs 1.05–1.36)
NARROW = 16
NARROW_ROWS = 8


class Dense:
    """``activation(x @ kernel + bias)``; ``relu``: the activation is relu, applied in
    place with the bias in one pass. A softmax (over the last axis) takes the bias and
    the softmax in one compiled pass (``_softmax``)."""

    __slots__ = ("kernel", "bias", "relu", "activation", "softmax")

    def __init__(self, kernel, bias, relu, activation):
        self.kernel, self.bias, self.relu, self.activation = kernel, bias, relu, activation
        self.softmax = (getattr(activation, "registered_name", None) == "softmax"
                        and getattr(activation, "axis", None) == -1)

    def __call__(self, x):
        if self.softmax:
            y = _softmax(x, self.kernel, self.bias)
            if y is not None:
                return y
        W = self.kernel
        # over the last axis; the activation sees the block's own shape (a softmax
        # over another axis)
        z = np.matmul(x.reshape(-1, x.shape[-1]), W).reshape(*x.shape[:-1], W.shape[1])
        fused.bias_act(z, self.bias, self.relu)
        return z if self.relu else self.activation.forward(z)


def _softmax(x, W, b):
    """softmax(x @ W + b) over the last axis through a compiled kernel, or None where
    NumPy's lines are the better deal: a block of fewer than fused.SMALL outputs, other
    dtypes. A float32 output of at most NARROW units (NARROW_ROWS rows or more):
    product, bias and softmax in one pass (dense_chain_kernels.narrow_softmax); else
    the product (a narrow W padded) then bias and softmax in one pass (a 512×10 block:
    153 → 94 µs with the product). The same operations as Softmax.forward (max, exp of
    the difference, sum, divide), the sums in another order: within float32 rounding
    of it, not the same bits.

    So which path runs hangs on the block's shape alone — never on whether the process
    has loaded Numba yet (fused.py's rule for its bit-identical passes): a resumed
    process whose first act is a validation round must round as the run it resumes
    (tests/test_chain_softmax_path.py). Blocks under SMALL outputs (a quickstart's
    validation batches) stay NumPy's, so a small model never imports Numba for them."""
    n, units = len(x), W.shape[1]
    dtype = np.result_type(x, W)
    size = n * units
    if (dtype not in (np.float32, np.float64) or x.ndim != 2 or size < fused.SMALL
            or (b is not None and b.dtype != dtype)):
        return None
    bias = np.zeros(units, dtype) if b is None else b
    y = np.empty((n, units), dtype)
    from trainer.engine.kernels import dense_chain_kernels  # (loads Numba)

    if (units <= NARROW and n >= NARROW_ROWS and dtype == np.float32
            and x.dtype == W.dtype and x.flags.c_contiguous):
        padded = np.zeros((W.shape[0], NARROW), dtype)
        padded[:, :units] = W
        dense_chain_kernels.narrow_softmax(x, padded, bias, y)
        return y
    if units < NARROW:
        padded = np.zeros((W.shape[0], NARROW), W.dtype)
        padded[:, :units] = W
        W = padded
    dense_chain_kernels.bias_softmax(np.matmul(x, W), bias, y)
    return y


class Activation:
    """An elementwise activation on its own (an Activation layer)."""

    __slots__ = ("activation",)

    def __init__(self, activation):
        self.activation = activation

    def __call__(self, x):
        return self.activation.forward(x)


class Identity:
    """A step that computes nothing (Dropout at inference): chains leave it out."""

    __slots__ = ()

    def __call__(self, x):
        return x


IDENTITY = Identity()


def run(x, steps, min_rows=None):
    """The chain's output for ``x`` of shape (batch, ..., features): ``steps`` applied
    in order to each block of samples, the parts of at least ``min_rows`` rows on the
    engine's threads (a sample of a sequence is several GEMM rows; ``min_rows`` and
    BLOCK_ROWS count those; ``layout``; None: MIN_ROWS). Compiled whole where it can
    be (``compiled``), else step by step."""
    per_sample = max(1, int(np.prod(x.shape[1:-1], dtype=np.int64)))
    blocks, spans = layout(len(x), per_sample, min_rows)
    y = compiled(x, steps, blocks, spans)
    if y is not None:
        return y

    def part(first, end):
        out = []
        for a, b in blocks[first:end]:
            y = x[a:b]
            for step in steps:
                y = step(y)
            out.append(y)
        return out

    ys = [y for part_ys in parallel.run_parts(part, spans) for y in part_ys]
    return ys[0] if len(ys) == 1 else np.concatenate(ys)


def layout(n, per_sample=1, min_rows=None):
    """(blocks, spans) of a chain over ``n`` samples: the parts ``parallel.ranges``
    cuts them into (at least ``min_rows`` GEMM rows each), each part cut into blocks
    of at most BLOCK_ROWS rows (sizes within 1), as (start, stop) samples; ``spans``:
    each part's first and end block. Fixed by the shape and the machine, never by the
    thread count. ``min_rows`` None: MIN_ROWS."""
    min_rows = MIN_ROWS if min_rows is None else min_rows
    block = max(1, BLOCK_ROWS // per_sample)
    blocks, spans = [], []
    for a, b in parallel.ranges(n, max(1, min_rows // per_sample)):
        first = len(blocks)
        blocks += [(a + s, a + e) for s, e in parallel.split(b - a, -(-(b - a) // block))]
        spans.append((first, len(blocks)))
    return blocks, spans


#: an activation's mode in the compiled chain (dense_chain_kernels.chain_blocks)
_MODES = {"linear": 0, "relu": 1, "softmax": 2}
#: one compiled parallel region at a time (Numba's workqueue layer aborts the process on
#: two at once); a second caller runs its parts in its own thread
_region = threading.Lock()


def compiled(x, steps, blocks, spans):
    """``run``'s output from compiled code over the whole chain
    (dense_chain_kernels.chain_blocks), or None where it cannot take the chain.

    Why (issue 28, the MLP at batch 1024, 2 threads): step by step, each thread's slice
    went back to Python (and took the GIL again) after every GEMM, bias pass and the
    softmax, and the parts ran on Python's thread pool, whose sleeping worker costs a
    futex wake-up on each side of every call (~80 µs for the submit alone on this VM).
    Here each block runs through the whole chain in compiled code that calls OpenBLAS's
    sgemm directly (blas.sgemm: the function NumPy's matmul calls), and the parts run
    as one Numba parallel region (a prange over them; under OpenMP its threads wait
    awake a while between calls).

    It takes float32 2-D C-contiguous rows through Dense steps only (Dropout at
    inference is left out before this), each relu or linear but the last, which may be
    a softmax over the features too — and then only where every block has at least
    fused.SMALL outputs (below that the step-by-step softmax takes NumPy's lines: other
    bits). ``run``'s blocks and parts, each block computed as ``Dense`` computes it:
    the same bits as step by step, on any thread count."""
    if (not blocks or x.ndim != 2 or x.dtype != np.float32 or not x.flags.c_contiguous
            or not all(isinstance(s, Dense) for s in steps)):
        return None
    widths, modes = [x.shape[1]], []
    for i, step in enumerate(steps):
        W, b = step.kernel, step.bias
        mode = _MODES.get(getattr(step.activation, "registered_name", None))
        if (mode is None or (mode == 2 and (i < len(steps) - 1 or not step.softmax))
                or W.dtype != np.float32 or W.ndim != 2 or not W.flags.c_contiguous
                or W.shape[0] != widths[-1]
                or (b is not None and (b.dtype != np.float32 or b.shape != W.shape[1:]))):
            return None
        widths.append(W.shape[1])
        modes.append((mode, b is not None))
    units = widths[-1]
    if modes[-1][0] == 2 and min(b - a for a, b in blocks) * units < fused.SMALL:
        return None
    gemm = blas.sgemm()
    if gemm is None:
        return None
    from trainer.engine.kernels import dense_chain_kernels as kernels  # (loads Numba)

    narrow = np.zeros((0, kernels.NB), np.float32)
    if modes[-1][0] == 2 and units <= NARROW:
        narrow = np.zeros((widths[-2], kernels.NB), np.float32)
        narrow[:, :units] = steps[-1].kernel
    biases = np.concatenate([np.zeros(w, np.float32) if s.bias is None else s.bias
                             for w, s in zip(widths[1:], steps)])
    y = np.empty((len(x), units), np.float32)
    args = (gemm, x, np.array([s.kernel.ctypes.data for s in steps], np.int64),
            np.array(widths, np.int64), biases, np.array(modes, np.int64), narrow, y,
            np.array(blocks, np.int64))
    parallel.pin_blas()
    threads = parallel.num_threads()
    if len(spans) > 1 and threads > 1 and not parallel.inside() and _region.acquire(False):
        try:
            import numba

            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            kernels.chain_parts(*args, np.array(spans, np.int64))
        finally:
            _region.release()
    else:
        kernels.chain_blocks(*args, 0, len(blocks))
    return y
