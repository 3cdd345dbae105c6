"""Direct 2-D convolution (NHWC) with register blocking, in Numba (issue 28).

For a convolution with few input channels (the first layer of an image model: 3)
im2col + sgemm is a poor GEMM (K = kh·kw·C = 27) behind a copy nine times the input;
and at inference Winograd's transforms cost more than they save on 32-channel layers.
This computes the output straight from the (padded) input instead. The kernels are in
direct_conv_kernels.py.

Forward, per sample, per block of ``PB`` = 8 output pixels (consecutive in row-major
order, across row ends) × ``FB`` = 32 output channels: 8 × 32 accumulators in
fixed-size stack arrays (``stack``: an alloca LLVM promotes to registers: 16 zmm
registers with AVX-512, 32 ymm with AVX2, some then spilled), a loop over the
K = kh·kw·C taps loading one weight row (32 channels, contiguous) and 8 input values
(broadcast), 16 vector FMAs; then bias and relu on the accumulators and one store.
The last block of pixels (and of channels) is moved back to end at the edge
(``min(start, size - block)``): it recomputes a few outputs with the same operations
in the same order, so every output has the same bits whichever block computed it. The
generated code (``inspect_asm`` on this AVX-512 machine) keeps the 16 accumulators in
zmm registers, 16 ``vfmadd231ps`` per tap.

Weight gradient (the first layer needs no input gradient): per sample, dz = dy·(y > 0)
(relu fused) into a per-thread buffer while summing db, then per block of ``KB`` = 8
taps × 32 channels, 16 accumulators summed over the sample's output pixels: one dz row
(contiguous) times 8 input values (broadcast) per pixel. Per-sample results are added
to the part's sum in sample order, parts (fixed by the batch size and the machine:
parallel.ranges) in order: the same bits on any thread count.

Sums run over the taps in (p, q, c) order with fused multiply-adds; float32 results
differ from im2col's in the last bits (the tests' tolerance: 1e-5 of the output's
scale against the float64 reference).

Input gradient (stride 1): the convolution of dz, padded by (dilated kernel - 1 -
forward pad), with the kernel flipped and its in/out axes swapped: the forward kernel
again (its C outputs ≥ ``FB``).

Chains (``forward_chain``, where no backward runs: trainer/engine/fusion.py plans them):
direct convolutions each the only reader of the one before (Dropout at inference
between them skipped) run sample by sample, each sample through every stage before
the next, its activations in per-thread scratch (the classic CNN's largest, 128 KB a
sample, stays in L2 where a 32-row block's 4 MB went through L3), and only the last
stage's output is made for the batch. A stage whose output a 2×2 stride-2 max pool
that pads nothing reads takes the pool into its kernel (``forward_pool_sample``): its
8 pixels are the windows of two pooled pixels (consecutive in row-major order, across
row ends), the maximum taken after bias and relu in the pool kernel's order, so only
the pooled output is written and the row and column a pool drops are never computed.
The same kernels in the same order: the same bits as the stages one by one and
pool.py's max pool. With AVX2's 3-pixel block (no pooled pixel's window in a
block) a pooled stage computes only the output pixels its pool reads (2⌊H'/2⌋ ×
2⌊W'/2⌋: the classic CNN's 13×13 conv4 output, 12×12 of it) into a sample's scratch,
then pools them in pool.py's order (``pool_sample``). Measured in benchmarks/README.md
("Convolution chains at inference"); on a real AVX2 machine (AMD EPYC Zen 1, 2
threads, the classic CNN's predict at batch 1024, 20 interleaved pairs in one
process) chains against the layers one by one: 1.15× (IQR 1.10-1.19).

AVX2 (``wide_vectors`` false: Numba compiles for AVX2 only): the 8 × 32 block's 32 ymm
accumulators would spill, so the ``*_narrow`` kernels take 3 pixels × 32 channels
(dW: 3 taps × 32 channels; direct_conv_kernels.py's ``NPB``, ``NFB``, ``NKB``): 12 ymm
accumulators, per tap (pixel) 4 weight (dz) vectors and 3 broadcasts for 12 FMAs, no
stack access in the inner loops (``inspect_asm`` for haswell; 6 × 16 spilled 13 and 8
values a step there, 5 × 16 one; 4 × 16 fits too but with 8 FMAs a step). The block is
fixed by Numba's target, never by the thread count; each output sums its taps in the
same (p, q, c) order with FMAs in either block, so both give the same bits (tested).

Path rule (``use``), by the shape alone: 2-D float32 convolutions with relu or linear
activation, at least ``FB`` filters, at least ``PB`` output pixels and K ≥ ``KB``, and
either at most ``MAX_CHANNELS`` input channels where no input gradient is needed (any
kernel: the first layer, training or not), or 3×3 stride-1 with at most 64 filters and
at most ``MAX_CHANNELS_ANY_OUTPUT`` input channels (``MAX_CHANNELS_SMALL_OUTPUT`` on
outputs of at most ``SMALL_OUTPUT`` pixels), with or without backward, where it beats
Winograd and im2col — the same rule with either block (AVX-512's or AVX2's). Measured
on a real AVX2 machine (AMD EPYC Zen 1, where a ymm FMA takes both 128-bit pipes:
Winograd's K = 32 GEMMs ran at 13-16 GFLOP/s a core, the direct kernels at ~35), every
3×3 layer of the classic CNN won, inference and training, 64 channels included
(conv2-conv4 inference 2.5×, 1.6×, 1.3×; conv4 training 1.3×; the model's inference
1.13×). An earlier AVX2 rule (training only, up to 32 channels) came from AVX2 code
emulated on an AVX-512 machine, whose wide FMA units and caches favour Winograd: there
inference came out even (0.99×) and conv4 at 0.8-0.9×.
``TRAINER_CONV_DIRECT``: ``auto`` (default, the rule), ``off``, or ``force`` (every
shape the kernels take); only while ``TRAINER_CONV_ALGO`` is ``auto``. Measured in
benchmarks/README.md ("Direct convolution").
"""

import functools
import typing

import numpy as np

from trainer.engine.kernels import env_choice, parallel

#: output pixels (along a row) × output channels of one register block; taps of one
#: weight-gradient block (the kernels' constants: direct_conv_kernels.py)
PB, FB, KB = 8, 32, 8
#: the rule (module doc; measured in benchmarks/README.md, "Direct convolution"): any
#: kernel with at most this many input channels where no input gradient is needed (the
#: first layer), in training too: classic CNN 3×3 3→32 2.3-2.6× im2col's speed,
#: ResNet50's 7×7/2 3→64 1.9×
MAX_CHANNELS = 4
#: 3×3 stride-1 convolutions with at most 64 filters (measured: the classic CNN's),
#: forward alone (inference) and forward + backward (dx as the direct convolution of
#: dz): up to MAX_CHANNELS_ANY_OUTPUT input channels (inference against Winograd:
#: 32→32 at 30², 56²: 1.35×, 1.38×; 32→64 at 15², 28²: 1.40×, 1.19×), 64 only on
#: outputs of at most SMALL_OUTPUT pixels (64→64 at 13²: 1.19-1.24×; at 28²: 0.97×,
#: 56²: 0.96×); 128 channels lose (0.73×)
MAX_CHANNELS_ANY_OUTPUT = 32
MAX_CHANNELS_SMALL_OUTPUT = 64
SMALL_OUTPUT = 256
SETTINGS = ("auto", "off", "force")

_KERNELS = None


def setting():
    """The ``TRAINER_CONV_DIRECT`` setting (module doc)."""
    return env_choice("TRAINER_CONV_DIRECT", SETTINGS)


def eligible(rank, kernel, channels, filters, out_hw, dtype):
    """Whether the blocked kernels compute this convolution (any strides, dilations,
    paddings): 2-D, ≥ FB filters, ≥ PB output pixels, K ≥ KB taps."""
    return (rank == 2 and filters >= FB and out_hw[0] * out_hw[1] >= PB
            and kernel[0] * kernel[1] * channels >= KB
            and np.dtype(dtype) in (np.float32, np.float64))


def use(rank, kernel, strides, dilation, channels, filters, out_hw, dtype, training,
        input_grad, activation):
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
    if training and input_grad and not (tuple(strides) == (1, 1) and channels >= FB):
        return False  # dx is the direct convolution of dz: stride 1, ≥ FB channels
    if mode == "force":
        return True
    if np.dtype(dtype) != np.float32:
        return False
    if channels <= MAX_CHANNELS and not (training and input_grad):
        return True
    small = tuple(kernel) == (3, 3) and tuple(strides) == (1, 1) and (
        tuple(dilation) == (1, 1))
    return small and filters <= MAX_CHANNELS_SMALL_OUTPUT and (
        channels <= MAX_CHANNELS_ANY_OUTPUT or (
            channels <= MAX_CHANNELS_SMALL_OUTPUT and out_hw[0] * out_hw[1] <= SMALL_OUTPUT))


#: CPU names (LLVM's) with AVX-512, for a NUMBA_CPU_NAME that names one
AVX512_CPUS = ("skylake-avx512", "cascadelake", "cooperlake", "cannonlake",
               "icelake-client", "icelake-server", "tigerlake", "rocketlake",
               "sapphirerapids", "graniterapids", "emeraldrapids", "znver4", "znver5",
               "x86-64-v4")


@functools.cache
def wide_vectors():
    """Whether Numba compiles for AVX-512 here (its target: NUMBA_CPU_NAME and
    NUMBA_CPU_FEATURES when set, else this CPU). With AVX2 only, the 8 × 32 block's 32
    ymm accumulators do not fit the 16 registers (measured: the 3×3 32/64-channel
    layers 0.52-1.01× the old paths): there the 3 × 32 block (``*_narrow`` kernels),
    whose chains pool a sample's scratch instead of pooling in the kernel."""
    import numba

    name = numba.config.CPU_NAME
    if name and name != "host":
        features = numba.config.CPU_FEATURES or ""
        return "+avx512f" in features or (name in AVX512_CPUS and "-avx512f" not in features)
    from llvmlite import binding

    return bool(binding.get_host_cpu_features().get("avx512f", False))


def kernels():
    """The compiled kernels (compiled on first use, cached on disk)."""
    global _KERNELS
    if _KERNELS is None:
        from trainer.engine.kernels import direct_conv_kernels as k

        _KERNELS = {"forward": k.forward, "weight_grad": k.weight_grad,
                    "forward_chain": k.forward_chain,
                    "forward_sample": k.forward_sample, "grad_sample": k.grad_sample,
                    "forward_sample_narrow": k.forward_sample_narrow,
                    "grad_sample_narrow": k.grad_sample_narrow}
    return _KERNELS


def _block():
    """The kernels' last two arguments for this machine's register block
    (direct_conv_kernels.BLOCK_ARGS)."""
    from trainer.engine.kernels import direct_conv_kernels

    return direct_conv_kernels.BLOCK_ARGS[not wide_vectors()]


def _scratch(name, shape, dtype):
    """This module's per-thread scratch array (``parallel.scratch``)."""
    return parallel.scratch(__name__, name, shape, dtype)


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
    kernel, block = kernels()["forward"], _block()

    def part(a, e):
        kernel(x[a:e], W2, b, lo, *geo, _scratch("input", padded, x.dtype), z[a:e],
               *block)

    parallel.run(part, n, min_items=1)
    return z


class Stage(typing.NamedTuple):
    """One convolution of a ``forward_chain``: ``forward``'s arguments, and ``pool``:
    its output max-pooled 2×2 with stride 2 (⌊H'/2⌋ × ⌊W'/2⌋, see ``pools``)."""
    W: np.ndarray
    bias: np.ndarray | None
    relu: bool
    pads: tuple
    strides: tuple
    dilation: tuple
    out_hw: tuple
    pool: bool = False


def pools(out_hw):
    """Whether a stage with this output may take a 2×2 stride-2 max pool into its
    kernel: at least 2 pooled pixels (one block of the kernel)."""
    return (out_hw[0] // 2) * (out_hw[1] // 2) >= 2


def forward_chain(x, stages):
    """The stages (``Stage``, each reading the one before) of x (N, H, W, C) run sample
    by sample: one sample's activations go through every stage while they are in
    cache, and only the last stage's output is made for the batch; a pooled stage
    writes its pooled output alone. The same bits as ``forward`` stage by stage, then
    trainer/engine/kernels/pool.py's max pool where a stage pools (direct_conv_kernels.
    forward_chain). Samples split over the engine's threads."""
    x = np.ascontiguousarray(x)
    n, dtype = x.shape[0], x.dtype
    h, w, c = x.shape[1:]
    rows, Ws, bs, los = [], [], [], []
    sizes = {"w": 0, "b": 0, "buf": 0, "mid": 0}
    for i, st in enumerate(stages):
        kh, kw, cin, f = st.W.shape
        assert cin == c and (not st.pool or pools(st.out_hw)), (st.W.shape, c, st.out_hw)
        (pt, pb), (pl, pr) = st.pads
        hp, wp = h + pt + pb, w + pl + pr
        ho, wo = st.out_hw
        rows.append([pt, pl, kh, kw, *st.strides, *st.dilation, int(st.pool), c, hp, wp, ho,
                     wo, f, sizes["w"], sizes["b"], sizes["buf"], sizes["mid"]])
        Ws.append(np.ravel(st.W))  # (kh, kw, C, F) in order: the (K, F) matrix
        bs.append(np.zeros(f, dtype) if st.bias is None else st.bias)
        los.append(0 if st.relu else -np.inf)
        h, w, c = (ho // 2, wo // 2, f) if st.pool else (ho, wo, f)
        sizes["w"] += kh * kw * cin * f
        sizes["b"] += f
        sizes["buf"] += hp * wp * cin
        sizes["mid"] += h * w * c if i < len(stages) - 1 else 0
    Wf = np.concatenate(Ws).astype(dtype, copy=False)
    bf = np.concatenate(bs).astype(dtype, copy=False)
    los, geo = np.array(los, dtype), np.array(rows, np.int64)
    out = np.empty((n, h, w, c), dtype)
    kernel, block = kernels()["forward_chain"], _block()

    def part(a, e):
        kernel(x[a:e], Wf, bf, los, geo, _scratch("chain input", (sizes["buf"],), dtype),
               _scratch("chain mid", (max(1, sizes["mid"]),), dtype), out[a:e], *block)

    parallel.run(part, n, min_items=1)
    return out


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
    kern, block = kernels()["weight_grad"], _block()

    def part(a, e):
        dW, db = np.empty((k, f), x.dtype), np.empty(f, x.dtype)
        kern(x[a:e], dy[a:e], y[a:e], relu, *geo, _scratch("input", padded, x.dtype),
             _scratch("dz", dy.shape[1:], x.dtype), _scratch("g", (k, f), x.dtype), dW, db,
             *block)
        return dW, db

    parts = parallel.run(part, x.shape[0], min_items=1)
    dW, db = parts[0]
    for dWp, dbp in parts[1:]:
        dW += dWp
        db += dbp
    return dW.reshape(kernel_shape), db


def backward(x, dy, y, W, pads, strides, dilation, input_grad):
    """(dW, db, dx or None) of the convolution of x (its output ``y`` after relu, or
    None: linear). dx (stride 1) is the convolution of dz padded by (dilated kernel - 1
    - forward pad), with the kernel flipped and its in/out axes swapped: the forward
    kernel again."""
    if not input_grad:
        return (*weight_grad(x, dy, y, W.shape, pads, strides, dilation), None)
    dy = np.ascontiguousarray(dy, x.dtype)
    dz = dy
    if y is not None:
        from trainer.engine.kernels import fused

        dz = np.empty_like(dy)
        parallel.run(lambda a, e: fused.relu_backward(dy[a:e], y[a:e], out=dz[a:e]),
                     dy.shape[0], min_items=1)
    dW, db = weight_grad(x, dz, None, W.shape, pads, strides, dilation)
    (pt, pb), (pl, pr) = pads
    eh, ew = [(k - 1) * d for k, d in zip(W.shape[:2], dilation)]
    back = ((eh - pt, eh - pb), (ew - pl, ew - pr))
    flipped = np.ascontiguousarray(W[::-1, ::-1].transpose(0, 1, 3, 2))
    dx = forward(dz, flipped, None, False, back, (1, 1), dilation, x.shape[1:3])
    return dW, db, dx
