"""Conv1D and Conv2D (channels_last), as im2col + one GEMM.

Conv1D runs as a Conv2D over a height-1 image, so both share one code path.
Weights in Keras layout: ``kernel (kh, kw, in, filters)`` (Conv1D: ``(k, in, filters)``)
and ``bias (filters,)``.
"""

from typing import Literal

import numpy as np

from trainer import activations as act
from trainer.engine.kernels import direct_conv, fused, parallel, winograd
from trainer.engine.kernels.conv import col2im, crop2d, pad2d, padded_shape, patches, plan2d
from trainer.engine.layer import Layer
from trainer.layers._window import check_data_format, check_padding, ntuple, window_output
from trainer.layers.core import kernel_settings
from trainer.config.families import layers
from trainer.config.registry import IntOrPair, PositiveInt, arguments, component
from trainer.layers.argument_groups import KERNEL, LAYER


def fused_activation(activation, z):
    """Apply ``activation`` to a fresh pre-activation ``z``; relu/linear work in place
    (their backward only needs the sign of the output)."""
    name = getattr(activation, "registered_name", None)
    if name == "relu":
        fused.bias_act(z, relu=True)
        return z, lambda dy: fused.relu_backward(dy, z)
    if name == "linear":
        return z, lambda dy: dy
    y = activation.forward(z)
    return y, lambda dy: activation.backward(z, y, dy)


class Conv(Layer):
    """Shared base of the convolution layers: arguments, weights, bias and activation.

    Args:
        filters: number of output channels.
        kernel_size: int or list of ``rank`` ints.
        strides: int or list (default 1). padding: ``valid`` (default) or ``same``
            (TensorFlow's: output = ceil(input / stride), odd pad at bottom/right).
        dilation_rate: int or list (default 1).
        activation: default linear. use_bias: default true.
        kernel_initializer (glorot_uniform), bias_initializer (zeros),
        kernel_regularizer, bias_regularizer: as in Dense.
    """

    rank = 2
    paddings = ("valid", "same")

    @arguments(KERNEL, LAYER)
    def __init__(self, filters: PositiveInt, kernel_size: IntOrPair,
                 strides: IntOrPair = 1, padding: Literal["valid", "same"] = "valid",
                 data_format: Literal["channels_last"] | None = None,
                 dilation_rate: IntOrPair = 1, activation: component("activation") = None,
                 use_bias: bool = True, **args):
        super().__init__(**LAYER.take(args))
        self.filters = filters
        self.kernel_size = ntuple(kernel_size, self.rank, "kernel_size", self)
        self.strides = ntuple(strides, self.rank, "strides", self)
        check_padding(padding, self, self.paddings)
        self.padding = padding
        check_data_format(data_format, self)
        self.data_format = data_format
        self.dilation_rate = ntuple(dilation_rate, self.rank, "dilation_rate", self)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise self.error("strides > 1 together with dilation_rate > 1 is not supported "
                             "(as in Keras)")
        self.activation = act.get(activation)
        self.use_bias = use_bias
        kernel_settings(self, **KERNEL.take(args))

    # 2-D geometry of the op (Conv1D prepends a height-1 axis)
    def _geometry(self):
        if self.rank == 1:
            return ((1,) + self.kernel_size, (1,) + self.strides, (1,) + self.dilation_rate)
        return self.kernel_size, self.strides, self.dilation_rate

    def _as4d(self, x):
        return x[:, None] if self.rank == 1 else x

    def build(self, input_shape, rng):
        spatial = window_output(self, input_shape, self.rank, self.kernel_size, self.strides,
                                self.dilation_rate, self.padding, "kernel_size")
        channels = input_shape[-1]
        if channels is None:
            raise self.error(f"needs a known channel dimension, got input shape {input_shape}")
        self.add_weight("kernel", (*self.kernel_size, channels, self.filters),
                        self.kernel_initializer, rng, self.kernel_regularizer)
        self.add_bias(rng, self.filters)
        return (*spatial, self.filters)

    def add_bias(self, rng, units):
        if self.use_bias:
            self.add_weight("bias", (units,), self.bias_initializer, rng, self.bias_regularizer)

    def finish(self, z):
        """Bias and activation on a fresh (N, ..., F) pre-activation; returns
        (y, backward to dz with the bias gradient added)."""
        if self.use_bias:
            z += self.params["bias"]
        y, act_back = fused_activation(self.activation, z)

        def backward(dy):
            dz = act_back(dy)
            if self.use_bias:
                self.grads["bias"] += dz.reshape(-1, dz.shape[-1]).sum(axis=0)
            return dz

        return y, backward

    def forward(self, x, training):
        """im2col + GEMM, batch-parallel (trainer/engine/kernels/parallel.py): each
        worker thread pads its samples once, then copies the columns of a few samples
        at a time (a chunk that stays in cache), multiplies, adds the bias and applies
        relu in place. The column matrix is never kept: backward rebuilds a chunk's
        columns from the padded input (one cache-resident copy)."""
        kernel, strides, dilation = self._geometry()
        x4 = self._as4d(x)
        n, f = x4.shape[0], self.filters
        out_hw, pads = plan2d(x4.shape[1:3], kernel, strides, dilation, self.padding)
        if direct_conv.use(self.rank, kernel, strides, dilation, x4.shape[-1], f, out_hw,
                           x4.dtype, training, getattr(self, "needs_input_grad", True),
                           getattr(self.activation, "registered_name", None)):
            return self._forward_direct(x4, pads, out_hw)
        if winograd.use(kernel, strides, dilation, self.rank, x4.shape[-1], f, training):
            return self._forward_winograd(x4, pads, out_hw)
        W2 = self.params["kernel"].reshape(-1, f)
        bias = self.params["bias"] if self.use_bias else None
        act_name = getattr(self.activation, "registered_name", None)
        plan = ConvPlan(x4, kernel, strides, dilation, pads, out_hw)
        z = np.empty((n, *out_hw, f), dtype=x4.dtype)

        def forward_rows(start, stop):
            plan.pad(start, stop)
            for a, b in plan.chunks(start, stop):
                zc = z[a:b].reshape(-1, f)
                np.matmul(plan.columns(a, b), W2, out=zc)
                fused.bias_act(zc, bias, act_name == "relu")

        parallel.run(forward_rows, n)
        y = z if act_name in ("relu", "linear") else self.activation.forward(z)
        out = y
        input_grad = getattr(self, "needs_input_grad", True)
        z_shape, z_dtype = z.shape, z.dtype
        if act_name == "linear":
            z = y = None  # backward needs only the shape: the output is not kept for it

        def backward(dy):
            dy4 = self._as4d(dy)
            dz_all = None
            if act_name == "linear":  # dz is dy: read as it is, no copy
                dz_all = np.ascontiguousarray(dy4, dtype=z_dtype)
            elif act_name != "relu":
                dz_all = self._as4d(self.activation.backward(self._unas4d(z),
                                                             self._unas4d(y), dy))
            dz = np.empty(z_shape, z_dtype) if dz_all is None else dz_all
            if plan.one_by_one:
                def fill(a, b):  # dz of samples a:b (relu: from dy and the output)
                    if act_name == "relu":
                        fused.relu_backward(dy4[a:b], y[a:b], out=dz[a:b])

                dx1, dW1, db1 = plan.backward_1x1(dz, fill, W2, input_grad, bias is not None)
                self.grads["kernel"] += dW1.reshape(self.grads["kernel"].shape)
                if bias is not None:
                    self.grads["bias"] += db1
                return None if dx1 is None else self._unas4d(dx1)
            dx = np.empty(x4.shape, dtype=x4.dtype) if input_grad else None
            back = plan.input_grad_plan(dz) if input_grad else None
            W_back = None
            if back is not None:
                W_back = ConvPlan.flipped(self.params["kernel"].reshape(*kernel, -1, f))

            def backward_groups(g0, g1):
                """dW and db of the chunks of groups g0:g1, one sum per group (the
                chunk order fixed by the shapes: the same bits on any thread count);
                dz and dx chunk by chunk while the chunk is in cache."""
                sums = []
                for g in range(g0, g1):
                    dW = np.zeros_like(W2)
                    db = np.zeros(f, W2.dtype) if bias is not None else None
                    part = np.empty_like(W2)
                    for a, b in plan.group_chunks(g):
                        if act_name == "relu":
                            fused.relu_backward(dy4[a:b], y[a:b], out=dz[a:b])
                        dzc = dz[a:b].reshape(-1, f)
                        if db is not None:
                            db += dzc.sum(axis=0)
                        np.matmul(plan.columns(a, b).T, dzc, out=part)
                        dW += part
                        if dx is None:
                            continue
                        dxc = dx[a:b].reshape(-1, x4.shape[-1])
                        if plan.pointwise:
                            np.matmul(dzc, W2.T, out=dxc)
                        elif back is not None:
                            back.pad(a, b)
                            np.matmul(back.columns(a, b), W_back, out=dxc)
                        else:
                            dx[a:b] = plan.scatter(dzc @ W2.T, b - a)
                    sums.append((dW, db))
                return sums

            sums = [s for part in parallel.run(backward_groups, len(plan.groups), min_items=1)
                    for s in part]
            self.grads["kernel"] += sum(s[0] for s in sums).reshape(self.grads["kernel"].shape)
            if bias is not None:
                self.grads["bias"] += sum(s[1] for s in sums)
            if dx is None:
                return None  # the graph's input: nobody needs its gradient
            return self._unas4d(dx)

        return self._unas4d(out), backward

    def _unas4d(self, a):
        return a[:, 0] if self.rank == 1 else a

    def _forward_direct(self, x, pads, out_hw):
        """Direct convolution (trainer/engine/kernels/direct_conv.py), bias and relu
        fused; its backward gives dW, db and (stride 1) dx by the same kernels."""
        kernel, strides, dilation = self._geometry()
        W = self.params["kernel"]
        bias = self.params["bias"] if self.use_bias else None
        relu = getattr(self.activation, "registered_name", None) == "relu"
        y = direct_conv.forward(x, W, bias, relu, pads, strides, dilation, out_hw)
        input_grad = getattr(self, "needs_input_grad", True)

        def backward(dy):
            dW, db, dx = direct_conv.backward(x, dy, y if relu else None, W, pads, strides,
                                              dilation, input_grad)
            self.grads["kernel"] += dW
            if bias is not None:
                self.grads["bias"] += db
            return dx  # None for the graph's input: nobody needs its gradient

        return y, backward

    def _forward_winograd(self, x, pads, out_hw):
        """3×3 stride-1 2-D convolution by Winograd F(2×2,3×3)
        (trainer/engine/kernels/winograd.py), bias and relu fused into its output
        transform; backward computes the relu mask chunk by chunk in the workers."""
        x = np.ascontiguousarray(x)
        W = self.params["kernel"]
        bias = self.params["bias"] if self.use_bias else None
        act_name = getattr(self.activation, "registered_name", None)
        z, tiling = winograd.forward(x, W, bias, act_name == "relu", pads, out_hw)
        y = z if act_name in ("relu", "linear") else self.activation.forward(z)
        input_grad = getattr(self, "needs_input_grad", True)

        def backward(dy):
            dy = np.ascontiguousarray(dy, dtype=z.dtype)
            dz_all = dy
            if act_name not in ("relu", "linear"):
                dz_all = np.ascontiguousarray(self.activation.backward(z, y, dy))

            def dz_of(a, b):
                if act_name != "relu":
                    return dz_all[a:b]
                out = _scratch("dz", (b - a, *z.shape[1:]), z.dtype)
                return fused.relu_backward(dy[a:b], y[a:b], out=out)

            dx, dW, db = winograd.backward(x, W, dz_of, pads, out_hw, tiling, input_grad,
                                           bias is not None)
            self.grads["kernel"] += dW
            if bias is not None:
                self.grads["bias"] += db
            return dx

        return y, backward


class ConvPlan:
    """One 2-D convolution call over a batch: its padded input, the strided view of
    every patch, and the chunks the workers copy into column matrices.

    ``pad(start, stop)`` pads samples start:stop into the call's padded buffer (each
    worker its own samples); ``columns(a, b)`` copies the patches of samples a:b into a
    per-thread column matrix (rows, kh·kw·C). Rows of a chunk are sized so that its
    column matrix takes about ``CHUNK_BYTES``: it then stays in cache between the copy
    that fills it and the GEMM that reads it. Column buffers are per thread and shared
    by every layer (the graph runs one layer at a time).
    """

    CHUNK_BYTES = 2 << 20
    #: weight gradients: at most this many groups of chunks, each summed in order
    GROUPS = 8
    #: at least this many chunks when the batch allows (threads share them evenly)
    MIN_CHUNKS = 16
    #: a stride-1 1×1 convolution whose chunks hold at least this many rows keeps the
    #: chunked backward (a reduction that long is efficient, and each chunk's input and
    #: gradient stay in cache between its dW and dx products: measured 0.8-0.9× for
    #: ``backward_1x1`` at 28×28 and 56×56 maps, batch 16, one thread; 1.3× at 14×14,
    #: 1.9-2.3× at 7×7)
    LONG_ROWS = 512

    def __init__(self, x4, kernel, strides, dilation, pads, out_hw):
        self.x4 = x4
        self.kernel, self.strides, self.dilation = kernel, strides, dilation
        self.pads, self.out_hw = pads, out_hw
        n, h, w, c = x4.shape
        self.padded = any(pads[0] + pads[1])
        self.pointwise = kernel == (1, 1) and strides == (1, 1) and not self.padded
        self.xp = np.empty(padded_shape(x4.shape, pads), x4.dtype) if self.padded else x4
        self.view = None if self.pointwise else patches(self.xp, kernel, strides, dilation,
                                                        out_hw)
        self.k = kernel[0] * kernel[1] * c
        row_bytes = out_hw[0] * out_hw[1] * self.k * x4.dtype.itemsize
        self.per_chunk = max(1, min(-(-n // self.MIN_CHUNKS),
                                    self.CHUNK_BYTES // max(row_bytes, 1)))
        rows = out_hw[0] * out_hw[1]
        #: a 1×1 kernel (it never pads) takes ``backward_1x1`` when strided or when a
        #: chunk's rows are few (by the shapes alone)
        self.one_by_one = kernel == (1, 1) and not self.padded and (
            strides != (1, 1) or self.per_chunk * rows < self.LONG_ROWS)
        if self.one_by_one:
            # its forward's chunks then take at least LONG_ROWS rows (within the column
            # matrix's cache budget when strided): a product over one 7×7 sample's 49
            # rows packs all of W for them (measured 1.7-1.9× slower at 7×7 with
            # 512-2048 channels than 8 samples at once, one thread; even at 14×14)
            wide = -(-self.LONG_ROWS // max(rows, 1))
            if not self.pointwise:
                wide = min(wide, max(1, self.CHUNK_BYTES // max(row_bytes, 1)))
            self.per_chunk = max(self.per_chunk, min(n, wide))
        self.groups = parallel.split(-(-n // self.per_chunk), self.GROUPS)

    def pad(self, start, stop):
        if self.padded:
            pad2d(self.x4[start:stop], self.pads, out=self.xp[start:stop])

    def chunks(self, start, stop):
        for a in range(start, stop, self.per_chunk):
            yield a, min(a + self.per_chunk, stop)

    def group_chunks(self, g):
        """(start, stop) samples of the chunks of group g (fixed by the shapes)."""
        n = self.x4.shape[0]
        for c in range(*self.groups[g]):
            yield c * self.per_chunk, min((c + 1) * self.per_chunk, n)

    def columns(self, a, b):
        """The (rows, kh·kw·C) column matrix of samples a:b (a thread buffer)."""
        if self.pointwise:
            return self.x4[a:b].reshape(-1, self.x4.shape[-1])
        view = self.view[a:b]
        cols = _scratch("cols", view.shape, self.x4.dtype)
        np.copyto(cols, view)
        return cols.reshape(-1, self.k)

    def scatter(self, dcols, m):
        """Input gradient of ``m`` samples from their column gradients (col2im)."""
        _, h, w, c = self.x4.shape
        shape = padded_shape((m, h, w, c), self.pads)
        dxp = col2im(dcols, shape, self.kernel, self.strides, self.dilation, self.out_hw,
                     out=_scratch("dxp", shape, dcols.dtype))
        return crop2d(dxp, self.pads)

    def backward_1x1(self, dz, fill, W2, need_dx, need_db):
        """(dx or None, dW (C, F), db or None) of a 1×1 convolution from its output
        gradient ``dz`` (N, Ho, Wo, F); ``fill(a, b)`` first writes dz of samples a:b
        (or does nothing when dz is given).

        A 1×1 convolution is one product ``z = Xs W`` with Xs (N·Ho·Wo, C) the input at
        the output's positions (every stride-th pixel). First, over the samples in
        parallel: dz, db per sample, ``dXs = dz Wᵀ`` (one GEMM per part, or per chunk
        when strided: the rows scattered to every stride-th pixel, zeros elsewhere)
        and, when strided or not contiguous, the rows of Xs. Then ``dW = Xsᵀ dz`` as
        one GEMM over all N·Ho·Wo rows, split over the larger of C and F (each part an
        exact sub-product: no partial sums). Per-chunk products (a chunk is one sample
        at batch 16) reduced over only 49-196 rows at 7×7 and 14×14 maps and packed W
        again for every 49-row dx product: the backward cost 2-2.5× its forward."""
        x4 = self.x4
        n, h, w, c = x4.shape
        ho, wo = self.out_hw
        f = W2.shape[1]
        sh, sw = self.strides
        strided = (sh, sw) != (1, 1)
        gather = strided or not x4.flags.c_contiguous
        xs = np.empty((n, ho, wo, c), x4.dtype) if gather else x4
        dx = np.empty(x4.shape, x4.dtype) if need_dx else None
        dbs = np.empty((n, f), dz.dtype) if need_db else None
        rows = ho * wo
        per = max(1, self.CHUNK_BYTES // max(rows * c * x4.dtype.itemsize, 1))

        def samples(a, b):
            fill(a, b)
            if need_db:
                for s in range(a, b):
                    dbs[s] = dz[s].reshape(-1, f).sum(axis=0)
            if gather:
                np.copyto(xs[a:b], x4[a:b, ::sh, ::sw])
            if dx is None:
                return
            if not strided:
                np.matmul(dz[a:b].reshape(-1, f), W2.T, out=dx[a:b].reshape(-1, c))
                return
            dx[a:b] = 0
            for s in range(a, b, per):
                e = min(s + per, b)
                part = _scratch("dxs", ((e - s) * rows, c), x4.dtype)
                np.matmul(dz[s:e].reshape(-1, f), W2.T, out=part)
                dx[s:e, ::sh, ::sw] = part.reshape(e - s, ho, wo, c)

        parallel.run(samples, n, min_items=1)
        x2, d2 = xs.reshape(-1, c), dz.reshape(-1, f)
        dW = np.empty((c, f), W2.dtype)
        if f >= c:
            parallel.run(lambda a, b: np.matmul(x2.T, d2[:, a:b], out=dW[:, a:b]), f,
                         min_items=16)
        else:
            parallel.run(lambda a, b: np.matmul(x2[:, a:b].T, d2, out=dW[a:b]), c,
                         min_items=16)
        return dx, dW, (dbs.sum(axis=0) if need_db else None)

    def input_grad_plan(self, dz):
        """dx of a stride-1 convolution is itself a convolution: of the output
        gradient ``dz``, padded by (dilated kernel - 1 - forward pad), with the kernel
        flipped and its in/out axes swapped — im2col + GEMM again instead of a col2im
        scatter. The plan of that convolution, or None (strided: col2im)."""
        if self.strides != (1, 1) or self.pointwise:
            return None
        (pt, pb), (pl, pr) = self.pads
        eh, ew = [(k - 1) * d for k, d in zip(self.kernel, self.dilation)]
        back_pads = ((eh - pt, eh - pb), (ew - pl, ew - pr))
        plan = ConvPlan(dz, self.kernel, (1, 1), self.dilation, back_pads,
                        self.x4.shape[1:3])
        plan.per_chunk = self.per_chunk  # walk the same chunks as the forward plan
        return plan

    @staticmethod
    def flipped(kernel):
        """The input-gradient convolution's weights: (kh·kw·F, C)."""
        return np.ascontiguousarray(kernel[::-1, ::-1].transpose(0, 1, 3, 2)).reshape(
            -1, kernel.shape[2])






def _scratch(name, shape, dtype):
    """This module's per-thread scratch array (``parallel.scratch``)."""
    return parallel.scratch(__name__, name, shape, dtype)


@layers.register("Conv2D", "Convolution2D")
class Conv2D(Conv):
    """2-D convolution over (N, H, W, C) → (N, H', W', filters). See ``Conv`` for args."""

    rank = 2

    def chain_stage(self, pool, training):
        """This convolution (and ``pool``, the only reader of its output, or None) as
        a stage of a chain of direct convolutions run sample by sample where no
        backward runs (trainer/engine/fusion.py, direct_conv.forward_chain): a
        function of the input's shape and dtype giving the direct_conv.Stage (None on
        an input where it does not take the direct path after all). None (no stage)
        where it does not take the direct path on the input it was built for (in its
        dtype), for a subclass, a forward replaced on the layer, or a ``pool`` other
        than a 2×2 stride-2 max pool that pads nothing."""
        if type(self) is not Conv2D or not self.runs_own_forward(Conv2D):
            return None
        if None in (*self.input_shape, *self.output_shape):
            return None  # (an image size known only at run time: the layers as they are)
        out_hw = tuple(self.output_shape[:2])
        if pool is not None and not (
                getattr(pool, "max_2x2", lambda: False)()
                and tuple(pool.output_shape[:2]) == (out_hw[0] // 2, out_hw[1] // 2)
                and direct_conv.pools(out_hw)):
            return None
        kernel, strides, dilation = self._geometry()
        act_name = getattr(self.activation, "registered_name", None)

        def direct(channels, dtype):
            return direct_conv.use(self.rank, kernel, strides, dilation, channels,
                                   self.filters, out_hw, dtype, training, False, act_name)

        if not direct(self.input_shape[-1], self.dtype):
            return None  # not the direct path on the inputs it was built for

        def stage(shape, dtype):
            if not direct(shape[-1], dtype):
                return None
            pads = plan2d(shape[1:3], kernel, strides, dilation, self.padding)[1]
            return direct_conv.Stage(self.params["kernel"],
                                     self.params["bias"] if self.use_bias else None,
                                     act_name == "relu", pads, strides, dilation, out_hw,
                                     pool is not None)

        return stage


@layers.register("Conv1D", "Convolution1D")
class Conv1D(Conv):
    """1-D convolution over (N, steps, C) → (N, steps', filters); padding may also be
    ``causal`` (all padding on the left). See ``Conv`` for args."""

    rank = 1
    paddings = ("valid", "same", "causal")

    @arguments(KERNEL, LAYER)
    def __init__(self, filters: PositiveInt, kernel_size: IntOrPair,
                 strides: IntOrPair = 1, padding: Literal["valid", "same", "causal"] = "valid",
                 data_format: Literal["channels_last"] | None = None,
                 dilation_rate: IntOrPair = 1, activation: component("activation") = None,
                 use_bias: bool = True, **args):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         activation, use_bias, **args)
