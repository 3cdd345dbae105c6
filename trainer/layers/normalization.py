"""BatchNormalization, LayerNormalization, GroupNormalization and UnitNormalization,
Keras semantics.

The first three normalise ``x̂ = (x - mean) / sqrt(var + epsilon)`` and return
``gamma·x̂ + beta``; they differ in which axes the statistics are taken over. The backward pass is the
usual closed form, ``dx = (dx̂ - mean(dx̂) - x̂·mean(dx̂·x̂)) / sqrt(var + epsilon)``.
"""

import copy
import math

import numpy as np

from trainer import initializers, regularizers
from trainer.distributed import shard
from trainer.engine.layer import Layer
from trainer.config.families import layers
from trainer.config.registry import component

#: the fewest values BatchNormalization's training passes run compiled (by the shape
#: alone; smaller blocks take the NumPy lines and never load Numba)
KERNEL_MIN = 1 << 16


def _axes(axis, ndim, layer):
    """Feature axes of a sample-less shape of rank ``ndim``, as positive batch-including
    axis numbers (Keras counts the batch axis as 0)."""
    values = [axis] if isinstance(axis, int) else list(axis)
    out = []
    for a in values:
        a = a + ndim + 1 if a < 0 else a
        if not 1 <= a <= ndim:
            raise layer.error(f"axis {axis!r} is out of range for inputs of rank {ndim + 1}")
        out.append(a)
    return sorted(set(out))


def normalize(x, reduce_axes, epsilon, over_batch=False):
    """``over_batch``: the statistics are the global batch's when the batch is split
    over MPI ranks (trainer.distributed.shard), summed over the ranks in two passes as
    a single process computes them (mean, then the mean squared deviation)."""
    mean = _mean(x, reduce_axes, over_batch)
    centred = x - mean
    var = _mean(centred * centred, reduce_axes, over_batch)
    inv_std = 1.0 / np.sqrt(var + epsilon)
    centred *= inv_std  # x̂, in the centred array (the same bits as centred · inv_std)
    return centred, mean, var, inv_std


def normalize_backward(dxhat, xhat, inv_std, reduce_axes, over_batch=False,
                       overwrite=False):
    """``overwrite``: ``dxhat`` and ``xhat`` are the caller's own fresh arrays, which
    the result may take (the same operations in the same order, so the same bits,
    with two input-sized temporaries fewer)."""
    mean_d = _mean(dxhat, reduce_axes, over_batch)
    mean_dx = _mean(dxhat * xhat, reduce_axes, over_batch)
    if not overwrite or not (dxhat.dtype == xhat.dtype == np.result_type(
            dxhat, xhat, mean_d, mean_dx, inv_std)):
        return (dxhat - mean_d - xhat * mean_dx) * inv_std
    dxhat -= mean_d
    xhat *= mean_dx
    dxhat -= xhat
    dxhat *= inv_std
    return dxhat


def _mean(x, reduce_axes, over_batch):
    if not over_batch or shard.current() is None:
        return x.mean(axis=reduce_axes, keepdims=True)
    count = x.size // max(1, math.prod(x.shape[a] for a in range(x.ndim)
                                       if a not in reduce_axes))
    total, n = shard.sum_over_batch([x.sum(axis=reduce_axes, keepdims=True, dtype=np.float64),
                                     np.float64(count)])
    return (total / max(n, 1.0)).astype(x.dtype)


class _Normalization(Layer):
    #: per time step over the features (LayerNormalization), or elementwise with the
    #: statistics (BatchNormalization): a mask goes on, as in Keras 2
    passes_mask = True

    def _init_affine(self, epsilon, center, scale, beta_initializer, gamma_initializer,
                     beta_regularizer, gamma_regularizer):
        """The arguments every normalization shares: epsilon and the affine part."""
        if not epsilon > 0:
            raise self.error(f"epsilon must be positive, got {epsilon}")
        self.epsilon = epsilon
        self.center = center
        self.scale = scale
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)

    def _build_affine(self, input_shape, rng):
        self._feature_axes = _axes(self.axis, len(input_shape), self)
        shape = [input_shape[a - 1] for a in self._feature_axes]
        if any(d is None for d in shape):
            raise self.error(f"needs known sizes on axis {self.axis}, got input shape "
                             f"{tuple(input_shape)}")
        # broadcastable against (N, *input_shape)
        self._bshape = tuple(input_shape[a - 1] if a in self._feature_axes else 1
                             for a in range(1, len(input_shape) + 1))
        if self.scale:
            self.add_weight("gamma", shape, self.gamma_initializer, rng, self.gamma_regularizer)
        if self.center:
            self.add_weight("beta", shape, self.beta_initializer, rng, self.beta_regularizer)
        return shape

    def _affine(self, xhat):
        """gamma·x̂ + beta and its backward (dy → dx̂, adding dgamma, dbeta)."""
        gamma = self.params["gamma"].reshape(self._bshape) if self.scale else None
        y = xhat * gamma if self.scale else xhat.copy()
        if self.center:
            y += self.params["beta"].reshape(self._bshape)
        return y, lambda dy: self._affine_backward(dy, xhat)

    def _affine_backward(self, dy, xhat):
        """dy → dx̂ of ``gamma·x̂ + beta``, adding dgamma and dbeta."""
        others = tuple(a for a in range(xhat.ndim) if a not in self._feature_axes)
        if self.scale:
            self.grads["gamma"] += (dy * xhat).sum(axis=others).reshape(
                self.grads["gamma"].shape)
        if self.center:
            self.grads["beta"] += dy.sum(axis=others).reshape(self.grads["beta"].shape)
        return dy * self.params["gamma"].reshape(self._bshape) if self.scale else dy


@layers.register("BatchNormalization")
class BatchNormalization(_Normalization):
    """Normalises each feature over the batch (and spatial axes).

    While training it normalises with the batch's mean and (biased) variance and
    updates the moving statistics ``moving = moving·momentum + batch·(1 - momentum)``.
    The batch variance in that update is tf.keras 2's: on its fused path (inputs of
    rank 4 or 5 — after Conv2D/Conv3D — normalised over the channels, first or last
    axis, in float32) the unbiased one, m/(m-1) times the biased (m values per
    feature); on its non-fused path (2-D inputs after Dense, sequences, several axes,
    float64) the biased one. At inference (and when the layer is frozen,
    ``trainable: false``, as in Keras 2) it uses the moving statistics.
    Training on channels-last blocks of ``KERNEL_MIN`` values and up runs as four
    compiled passes (trainer/engine/kernels/batchnorm.py), smaller ones as NumPy lines.

    Args: axis (-1, the channels), momentum (0.99), epsilon (0.001), center (true:
    beta), scale (true: gamma), beta_initializer (zeros), gamma_initializer (ones),
    moving_mean_initializer (zeros), moving_variance_initializer (ones),
    beta_regularizer, gamma_regularizer.
    Weights (Keras order): gamma, beta, then the non-trainable moving_mean,
    moving_variance, each of shape (features,).
    """

    def __init__(self, axis: int | list[int] = -1, momentum: float = 0.99,
                 epsilon: float = 0.001, center: bool = True, scale: bool = True,
                 beta_initializer: component("initializer") = "zeros",
                 gamma_initializer: component("initializer") = "ones",
                 moving_mean_initializer: component("initializer") = "zeros",
                 moving_variance_initializer: component("initializer") = "ones",
                 beta_regularizer: component("regularizer") = None,
                 gamma_regularizer: component("regularizer") = None,
                 name: str | None = None, trainable: bool = True):
        super().__init__(name=name, trainable=trainable)
        self.axis = axis
        if not 0 <= momentum <= 1:
            raise self.error(f"momentum must be in [0, 1], got {momentum}")
        self.momentum = momentum
        self._init_affine(epsilon, center, scale, beta_initializer, gamma_initializer,
                          beta_regularizer, gamma_regularizer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)

    def build(self, input_shape, rng):
        shape = self._build_affine(input_shape, rng)
        self.add_weight("moving_mean", shape, self.moving_mean_initializer, rng,
                        trainable=False)
        self.add_weight("moving_variance", shape, self.moving_variance_initializer, rng,
                        trainable=False)
        return input_shape

    def _fused_path(self, x):
        """Whether tf.keras 2 would run its fused kernel (which updates the moving
        variance with the unbiased batch variance) on ``x``."""
        return (x.ndim in (4, 5) and len(self._feature_axes) == 1
                and self._feature_axes[0] in (1, x.ndim - 1)
                and x.dtype in (np.float32, np.float16))

    def forward(self, x, training):
        reduce_axes = tuple(a for a in range(x.ndim) if a not in self._feature_axes)
        if not (training and self.trainable):
            return self._forward_moving(x)
        compiled = self.forward_chain(x, None, False, training)
        if compiled is not None:
            y, backward = compiled
            return y, lambda dy: backward(dy)[0]
        xhat, mean, var, inv_std = normalize(x, reduce_axes, self.epsilon, over_batch=True)
        self._update_moving(x, mean, var)
        # gamma·x̂ + beta in x̂'s own array (the same operations as _affine); backward
        # recomputes x̂ from x (which the layer before keeps anyway): one activation
        # fewer kept per normalization while training
        y = xhat
        del xhat
        if self.scale:
            y *= self.params["gamma"].reshape(self._bshape)
        if self.center:
            y += self.params["beta"].reshape(self._bshape)

        def backward(dy):
            xhat = np.subtract(x, mean)  # as normalize computed it: the same bits
            xhat *= inv_std
            dxhat = self._affine_backward(dy, xhat)
            if dxhat is dy:  # no scale: dy is the caller's, the result must not take it
                dxhat = dy.copy()
            return normalize_backward(dxhat, xhat, inv_std, reduce_axes, over_batch=True,
                                      overwrite=True)

        return y.astype(x.dtype, copy=False), backward

    # -- training on the compiled passes (trainer/engine/kernels/batchnorm.py) ------
    def _kernel_rows(self, x):
        """``x`` as a C-contiguous (rows, features) view when the compiled passes take
        it (the features the last axes, float32/64, at least ``KERNEL_MIN`` values in
        the statistics: over the ranks when the batch is split, so that every rank
        takes the same path and its sums meet the others'), else None (the NumPy
        lines)."""
        feats = self._feature_axes
        values = shard.statistics_rows(len(x)) * math.prod(x.shape[1:])
        if (values < KERNEL_MIN or x.dtype not in (np.float32, np.float64)
                or not x.flags.c_contiguous
                or feats != list(range(x.ndim - len(feats), x.ndim))):
            return None
        return x.reshape(-1, math.prod(x.shape[len(x.shape) - len(feats):]))

    def forward_chain(self, x, other, relu, training):
        """Training on the compiled passes: ``y = (x - mean)·gamma·inv_std + beta`` on
        the batch's statistics, then ``+ other`` (when given) and relu (when ``relu``)
        inside the same passes — a chain's run (trainer/engine/fusion.py), and
        ``forward``'s own with neither — as (y, backward(dy) → (dx, d other or None));
        None where the compiled passes do not apply (inference, frozen, another
        layout)."""
        from trainer.engine.kernels import batchnorm

        if not (training and self.trainable) or type(self) is not BatchNormalization:
            return None
        x2 = self._kernel_rows(x)
        if x2 is None or (other is not None and (
                other.shape != x.shape or other.dtype != x.dtype
                or not other.flags.c_contiguous)):
            return None
        rows, c = x2.shape
        if shard.current() is None:
            shift, n = x2[0].astype(np.float64), float(rows)
            s = batchnorm.moments(x2, shift)
        else:  # the ranks' shifts must agree: the global mean of a first pass
            s1, n = shard.sum_over_batch([batchnorm.moments(x2, np.zeros(c))[0],
                                          np.float64(rows)])
            shift = s1 / max(n, 1.0)
            s = shard.sum_over_batch([batchnorm.moments(x2, shift)])[0]
        d1 = s[0] / n
        mean = shift + d1
        var = np.maximum(s[1] / n - d1 * d1, 0.0)
        inv_std = 1.0 / np.sqrt(var + self.epsilon)
        self._update_moving(x, mean.astype(x.dtype), var.astype(x.dtype))
        gamma = (self.params["gamma"].reshape(-1).astype(np.float64) if self.scale
                 else np.ones(c))
        beta = self.params["beta"].reshape(-1) if self.center else np.zeros(c)
        o2 = None if other is None else other.reshape(x2.shape)
        y2 = batchnorm.normalize(x2, mean, gamma * inv_std, beta, o2, relu)
        # what backward keeps: x (which the layer before keeps anyway), the relu's
        # output when fused (which the next layer keeps), never the Add's operand
        mask = y2 if relu else None
        add = other is not None
        del o2, other

        def backward(dy):
            dy2 = np.ascontiguousarray(dy, x.dtype).reshape(x2.shape)
            keep_d = relu and add  # the Add's other input takes d
            local, d = batchnorm.gradient_sums(dy2, x2, mean, mask, keep_d)
            if self.scale:
                self.grads["gamma"] += (inv_std * local[1]).reshape(
                    self.grads["gamma"].shape).astype(self.grads["gamma"].dtype)
            if self.center:
                self.grads["beta"] += local[0].reshape(
                    self.grads["beta"].shape).astype(self.grads["beta"].dtype)
            total = local if shard.current() is None else shard.sum_over_batch([local])[0]
            p = gamma * inv_std
            q = -p * inv_std * inv_std * total[1] / n
            r = -p * total[0] / n
            if keep_d:
                dx = batchnorm.gradient_apply(d, x2, mean, p, q, r)
            else:
                dx = batchnorm.gradient_apply(dy2, x2, mean, p, q, r, mask)
                d = dy if add else None
            return dx.reshape(x.shape), (d.reshape(x.shape) if add else None)

        return y2.reshape(x.shape), backward

    def _update_moving(self, x, mean, var):
        """``moving = moving·momentum + batch·(1 - momentum)`` with the batch's mean and
        variance (x's dtype); the variance unbiased on tf.keras 2's fused path."""
        if self._fused_path(x):
            # values per feature in the statistics: the micro-batch's (over the ranks)
            m = shard.statistics_rows(len(x)) * (x.size // max(len(x), 1)) // mean.size
            var = var * (m / max(m - 1, 1))
        keep = self.momentum
        for name, batch in (("moving_mean", mean), ("moving_variance", var)):
            moving = self.buffers[name]
            moving *= keep
            moving += (1 - keep) * batch.reshape(moving.shape).astype(moving.dtype)

    def _moving_stats(self):
        mean = self.buffers["moving_mean"].reshape(self._bshape)
        inv_std = 1.0 / np.sqrt(self.buffers["moving_variance"].reshape(self._bshape)
                                + self.epsilon)
        return mean, inv_std

    def _forward_moving(self, x):
        """Inference (and a frozen layer): ``(x - mean)·inv_std·gamma + beta`` on the
        moving statistics, in one output array (the same operations in the same
        order as x̂ then the affine part, so the same bits). Its backward recomputes
        x̂ from ``x`` when called: nothing input-sized is kept for it."""
        mean, inv_std = self._moving_stats()
        y = np.subtract(x, mean)
        y *= inv_std
        if self.scale:
            y *= self.params["gamma"].reshape(self._bshape)
        if self.center:
            y += self.params["beta"].reshape(self._bshape)

        def backward(dy):
            xhat = (x - mean) * inv_std
            return self._affine_backward(dy, xhat) * inv_std

        return y.astype(x.dtype, copy=False), backward

    # -- chains run as one step (trainer/engine/fusion.py) -----------------------
    def folds_into(self, producer, training):
        """Whether this layer, the only reader of ``producer``'s output, may run
        folded into that convolution's weights where no backward runs: when it
        normalises on the moving statistics (inference, or frozen) over the channels
        (the last axis), and ``producer`` is a Conv2D or Conv1D with a linear
        activation and this layer's dtype."""
        from trainer.layers.conv import Conv1D, Conv2D

        if type(self) is not BatchNormalization:  # a subclass may compute otherwise
            return False
        if (training and self.trainable) or type(producer) not in (Conv1D, Conv2D):
            return False
        if getattr(producer.activation, "registered_name", None) != "linear":
            return False
        return self._feature_axes == [len(self.input_shape)] and producer.dtype == self.dtype

    def epilogue(self, after):
        """Which of the layers ``after`` this one (each the only reader of the one
        before) its output may take in place: a plain relu, or an Add then a plain
        relu (a residual block's end). Names: (), ("relu",), ("add",) or ("add",
        "relu")."""
        from trainer.layers.merge import Add

        if type(self) is not BatchNormalization:  # its backward might keep its output
            return ()
        names = []
        if after and type(after[0]) is Add:
            names.append("add")
            after = after[1:]
        if after and _is_relu(after[0]):
            names.append("relu")
        return tuple(names)

    def folded(self, conv, relu=False):
        """A copy of ``conv`` whose weights hold this normalization (computed now, from
        the weights as they are): ``kernel·s`` and ``(bias - mean)·s + beta`` with
        ``s = gamma / sqrt(moving_variance + epsilon)``; its activation is relu when
        ``relu`` (the relu after this layer, fused). For inference only (no gradients)."""
        from trainer import activations

        var = self.buffers["moving_variance"].astype(np.float64)
        s = 1.0 / np.sqrt(var + self.epsilon)
        if self.scale:
            s = s * self.params["gamma"]
        shift = -self.buffers["moving_mean"].astype(np.float64)
        if conv.use_bias:
            shift = shift + conv.params["bias"]
        shift = shift * s
        if self.center:
            shift = shift + self.params["beta"]
        out = copy.copy(conv)
        # public attributes only: a cache a convolution keeps of its own weights (a
        # private attribute) must not serve the folded ones
        out.__dict__ = {k: v for k, v in conv.__dict__.items() if not k.startswith("_")}
        out.params = {"kernel": conv.params["kernel"] * s.astype(conv.dtype),
                      "bias": shift.astype(conv.dtype)}
        out.grads, out.regularizers = {}, {}
        out.use_bias = True
        out.activation = activations.get("relu" if relu else "linear")
        out.activity_regularizer = None
        out.needs_input_grad = False
        return out


def _is_relu(layer):
    """Whether ``layer`` is a plain relu: Activation(relu), or ReLU with its defaults."""
    from trainer.layers.advanced_activations import ReLU
    from trainer.layers.core import Activation

    if type(layer) is Activation:
        return getattr(layer.activation, "registered_name", None) == "relu"
    return (type(layer) is ReLU and layer.max_value is None and layer.negative_slope == 0
            and layer.threshold == 0)


@layers.register("LayerNormalization")
class LayerNormalization(_Normalization):
    """Normalises each sample over ``axis`` (default the last), then ``gamma·x̂ + beta``.

    Args: axis (-1, or a list), epsilon (0.001), center, scale, beta_initializer,
    gamma_initializer, beta_regularizer, gamma_regularizer.
    Weights: gamma, beta of the shape of the normalised axes.
    """

    def __init__(self, axis: int | list[int] = -1, epsilon: float = 0.001,
                 center: bool = True, scale: bool = True,
                 beta_initializer: component("initializer") = "zeros",
                 gamma_initializer: component("initializer") = "ones",
                 beta_regularizer: component("regularizer") = None,
                 gamma_regularizer: component("regularizer") = None,
                 name: str | None = None, trainable: bool = True):
        super().__init__(name=name, trainable=trainable)
        self.axis = axis
        self._init_affine(epsilon, center, scale, beta_initializer, gamma_initializer,
                          beta_regularizer, gamma_regularizer)

    def build(self, input_shape, rng):
        self._build_affine(input_shape, rng)
        return input_shape

    def forward(self, x, training):
        axes = tuple(self._feature_axes)
        xhat, _, _, inv_std = normalize(x, axes, self.epsilon)
        y, affine_back = self._affine(xhat)
        return y.astype(x.dtype, copy=False), lambda dy: normalize_backward(
            affine_back(dy), xhat, inv_std, axes)


@layers.register("GroupNormalization")
class GroupNormalization(_Normalization):
    """Splits the channels (last axis) into ``groups`` and normalises each sample's group
    over its spatial axes and its channels, then ``gamma·x̂ + beta`` per channel
    (tf.keras 2.11+). ``groups: -1`` puts each channel in its own group (instance
    normalization); ``groups: 1`` is LayerNormalization over all non-batch axes.

    Args: groups (32; must divide the channels), axis (-1 only), epsilon (0.001), center,
    scale, beta_initializer, gamma_initializer, beta_regularizer, gamma_regularizer.
    Weights: gamma, beta of shape (channels,).
    """

    def __init__(self, groups: int = 32, axis: int = -1, epsilon: float = 0.001,
                 center: bool = True, scale: bool = True,
                 beta_initializer: component("initializer") = "zeros",
                 gamma_initializer: component("initializer") = "ones",
                 beta_regularizer: component("regularizer") = None,
                 gamma_regularizer: component("regularizer") = None,
                 name: str | None = None, trainable: bool = True):
        super().__init__(name=name, trainable=trainable)
        if axis != -1:
            raise self.error(f"only axis -1 (channels last) is supported, got {axis!r}")
        if groups == 0 or groups < -1:
            raise self.error(f"groups must be positive (or -1: one per channel), got {groups}")
        self.groups, self.axis = groups, axis
        self._init_affine(epsilon, center, scale, beta_initializer, gamma_initializer,
                          beta_regularizer, gamma_regularizer)

    def build(self, input_shape, rng):
        channels = self._build_affine(input_shape, rng)[0]
        groups = channels if self.groups == -1 else self.groups
        if channels % groups:
            raise self.error(f"groups {groups} must divide the {channels} channels")
        self._per_group = channels // groups
        return input_shape

    def forward(self, x, training):
        xr = x.reshape(*x.shape[:-1], x.shape[-1] // self._per_group, self._per_group)  # (N, ..., groups, per group)
        axes = (*range(1, xr.ndim - 2), xr.ndim - 1)
        xhat, _, _, inv_std = normalize(xr, axes, self.epsilon)
        y, affine_back = self._affine(xhat.reshape(x.shape))

        def backward(dy):
            dxhat = affine_back(dy).reshape(xr.shape)
            return normalize_backward(dxhat, xhat, inv_std, axes).reshape(x.shape)

        return y.astype(x.dtype, copy=False), backward


@layers.register("UnitNormalization")
class UnitNormalization(Layer):
    """Scales each sample to unit L2 norm over ``axis`` (tf.keras 2.9+):
    ``x / sqrt(max(Σ x², 1e-12))``. No weights; a mask passes through.

    Args: axis (-1, or a list of axes).
    """

    passes_mask = True

    def __init__(self, axis: int | list[int] = -1, name: str | None = None):
        super().__init__(name=name)
        self.axis = axis

    def build(self, input_shape, rng):
        self._axes = tuple(_axes(self.axis, len(input_shape), self))
        return input_shape

    def forward(self, x, training):
        norm = np.sqrt(np.maximum((x * x).sum(axis=self._axes, keepdims=True), 1e-12))
        y = x / norm

        def backward(dy):
            inside = norm > 1e-6  # below the floor the norm is a constant
            along = (dy * y).sum(axis=self._axes, keepdims=True)
            return np.where(inside, dy - y * along, dy) / norm

        return y.astype(x.dtype, copy=False), backward
