"""Merge layers: several inputs → one output (Keras 2 ``keras.layers.merge``).

Element-wise merges (Add, Subtract, Multiply, Average, Maximum, Minimum) follow
Keras's broadcasting: shapes are aligned from the right (an input of lower rank gets
axes of size 1 inserted after the batch axis), and each pair of dimensions must be
equal or one of them 1. Concatenate needs equal shapes except on its axis; Dot
contracts one axis of each of its two inputs.

Axes (``Concatenate.axis``, ``Dot.axes``) count the batch axis as 0, as in Keras.
"""

import numpy as np

from trainer.engine.layer import Layer
from trainer.config.families import layers


def _shapes_text(shapes):
    return ", ".join(f"input {i}: {(None, *s)}" for i, s in enumerate(shapes))


def _unbroadcast(d, shape):
    """Sum ``d`` over the axes an input of ``shape`` (batch axis included) was
    broadcast along, so the gradient gets the input's shape back."""
    lead = d.ndim - len(shape)
    if lead:
        d = d.sum(axis=tuple(range(1, 1 + lead)))
    axes = tuple(i for i in range(1, len(shape)) if shape[i] == 1 and d.shape[i] != 1)
    return d.sum(axis=axes, keepdims=True) if axes else d


class _Merge(Layer):
    """Element-wise merge of two or more inputs; subclasses give ``combine`` and its
    gradient ``split``. The output's mask is the AND of the inputs' masks (those that
    have one), as tf.keras 2's ``_Merge`` (Keras 3 ORs them: the same for a residual
    block, whose inputs share one mask)."""

    multi_input = True
    takes_input_masks = True
    min_inputs, max_inputs = 2, None

    def __init__(self, name: str | None = None):
        super().__init__(name=name)

    def _check_count(self, input_shape):
        n = len(input_shape)
        if n < self.min_inputs or (self.max_inputs and n > self.max_inputs):
            want = (f"exactly {self.max_inputs}" if self.max_inputs == self.min_inputs
                    else f"at least {self.min_inputs}")
            raise self.error(f"needs {want} inputs, got {n}")

    def build(self, input_shape, rng):
        self._check_count(input_shape)
        out = tuple(input_shape[0])
        for shape in input_shape[1:]:
            out = self._broadcast(out, tuple(shape), input_shape)
        return out

    def _broadcast(self, a, b, shapes):
        if len(a) < len(b):
            a, b = b, a
        out = list(a[:len(a) - len(b)])
        for i, j in zip(a[len(a) - len(b):], b):
            if i is None or j is None:
                out.append(None)
            elif i == 1 or j == 1 or i == j:
                out.append(max(i, j))
            else:
                raise self.error(f"inputs cannot be broadcast together: {_shapes_text(shapes)} "
                                 f"(each pair of dimensions must be equal or 1)")
        return tuple(out)

    def forward(self, xs, training):
        ndim = max(x.ndim for x in xs)
        # lower-rank inputs get size-1 axes after the batch axis (Keras expand_dims(x, 1))
        aligned = [x.reshape(x.shape[:1] + (1,) * (ndim - x.ndim) + x.shape[1:]) for x in xs]
        y, split = self.combine(aligned)

        def backward(dy):
            dxs = split(dy)
            return [_unbroadcast(d, a.shape).reshape(x.shape)
                    for d, a, x in zip(dxs, aligned, xs)]

        return y, backward

    def combine(self, xs):
        """(y, split) where split(dy) gives one gradient per (aligned) input."""
        raise NotImplementedError

    def compute_mask(self, xs, mask):
        masks = [m for m in mask or () if m is not None]
        if not masks or any(m.shape != masks[0].shape for m in masks):
            return None
        return np.logical_and.reduce(masks) if len(masks) > 1 else masks[0]


@layers.register("Add")
class Add(_Merge):
    """Element-wise sum of its inputs."""

    def combine(self, xs):
        y = xs[0]
        for x in xs[1:]:
            y = y + x
        return y, lambda dy: [dy] * len(xs)


@layers.register("Subtract")
class Subtract(_Merge):
    """``inputs[0] - inputs[1]`` (exactly two inputs)."""

    max_inputs = 2

    def combine(self, xs):
        return xs[0] - xs[1], lambda dy: [dy, -dy]


@layers.register("Multiply")
class Multiply(_Merge):
    """Element-wise product of its inputs."""

    def combine(self, xs):
        y = xs[0]
        for x in xs[1:]:
            y = y * x

        def split(dy):
            out = []
            for i in range(len(xs)):
                d = dy
                for j, x in enumerate(xs):
                    if j != i:
                        d = d * x
                out.append(d)
            return out

        return y, split


@layers.register("Average")
class Average(_Merge):
    """Element-wise mean of its inputs."""

    def combine(self, xs):
        n = len(xs)
        y = xs[0]
        for x in xs[1:]:
            y = y + x
        y = y / y.dtype.type(n)
        return y, lambda dy: [dy / dy.dtype.type(n)] * n


class _Extremum(_Merge):
    """Maximum/Minimum folded pairwise as Keras does; the gradient goes to the
    input that was picked (the earlier one on ties)."""

    pick = None

    def combine(self, xs):
        y = xs[0]
        masks = []
        for x in xs[1:]:
            keep = self.pick(y, x)  # True where the running result wins
            masks.append(keep)
            y = np.where(keep, y, x)

        def split(dy):
            dxs = [None] * len(xs)
            d = dy
            for k in range(len(xs) - 1, 0, -1):
                keep = masks[k - 1]
                dxs[k] = np.where(keep, 0, d).astype(dy.dtype, copy=False)
                d = np.where(keep, d, 0).astype(dy.dtype, copy=False)
            dxs[0] = d
            return dxs

        return y, split


@layers.register("Maximum")
class Maximum(_Extremum):
    """Element-wise maximum of its inputs."""

    pick = staticmethod(np.greater_equal)


@layers.register("Minimum")
class Minimum(_Extremum):
    """Element-wise minimum of its inputs."""

    pick = staticmethod(np.less_equal)


@layers.register("Concatenate")
class Concatenate(Layer):
    """Joins its inputs along ``axis`` (default -1, the last; 0 is the batch axis and
    cannot be used). All other dimensions must be equal."""

    multi_input = True
    takes_input_masks = True

    def __init__(self, axis: int = -1, name: str | None = None):
        super().__init__(name=name)
        self.axis = axis

    def build(self, input_shape, rng):
        shapes = [tuple(s) for s in input_shape]
        if len(shapes) < 2:
            raise self.error(f"needs at least 2 inputs, got {len(shapes)}")
        ranks = {len(s) for s in shapes}
        if len(ranks) > 1:
            raise self.error(f"inputs must have the same rank: {_shapes_text(shapes)}")
        rank = len(shapes[0]) + 1  # with the batch axis
        if not -rank <= self.axis < rank or self.axis % rank == 0:
            raise self.error(f"axis {self.axis} is not a non-batch axis of inputs of rank "
                             f"{rank} (batch axis included): {_shapes_text(shapes)}")
        ax = self.axis % rank - 1  # in shapes without the batch axis
        self._axis = ax + 1
        for i, s in enumerate(shapes[1:], 1):
            if s[:ax] + s[ax + 1:] != shapes[0][:ax] + shapes[0][ax + 1:]:
                raise self.error(
                    f"inputs must match except on the concatenation axis {self.axis}: input 0 "
                    f"has shape {(None, *shapes[0])}, input {i} has shape {(None, *s)}")
        sizes = [s[ax] for s in shapes]
        total = None if None in sizes else sum(sizes)
        return shapes[0][:ax] + (total,) + shapes[0][ax + 1:]

    def forward(self, xs, training):
        y = np.concatenate(xs, axis=self._axis)
        cuts = np.cumsum([x.shape[self._axis] for x in xs])[:-1]
        return y, lambda dy: np.split(dy, cuts, axis=self._axis)

    def compute_mask(self, xs, mask):
        """tf.keras 2: inputs without a mask count as unmasked; joined along time
        (axis 1) the masks are joined too, along the features they are ANDed."""
        if not mask or all(m is None for m in mask) or xs[0].ndim < 3:
            return None
        masks = [np.ones(x.shape[:2], bool) if m is None else m for x, m in zip(xs, mask)]
        if self._axis == 1:
            return np.concatenate(masks, axis=1)
        if any(m.shape != masks[0].shape for m in masks):
            return None
        return np.logical_and.reduce(masks)


@layers.register("Dot")
class Dot(Layer):
    """Dot product of two inputs along one axis of each (batch axis kept).

    Args:
        axes: an axis for both inputs, or ``[axis_of_input_0, axis_of_input_1]``
            (batch axis is 0, so 1 is the first feature axis; negative counts from the end).
        normalize: L2-normalise both inputs along those axes first, so the result is
            the cosine proximity.
    Shapes: ``(N, d) · (N, d) → (N, 1)``; ``(N, a, d) · (N, b, d)`` with axes 2 → ``(N, a, b)``.
    """

    multi_input = True

    def __init__(self, axes: int | list[int], normalize: bool = False,
                 name: str | None = None):
        super().__init__(name=name)
        if isinstance(axes, list) and len(axes) != 2:
            raise self.error(f"axes must be one integer or a list of two, got {axes}")
        self.axes = axes
        self.normalize = normalize

    def build(self, input_shape, rng):
        if len(input_shape) != 2:
            raise self.error(f"needs exactly 2 inputs, got {len(input_shape)}")
        s1, s2 = (tuple(s) for s in input_shape)
        axes = self.axes if isinstance(self.axes, list) else [self.axes] * 2
        resolved = []
        for a, s in zip(axes, (s1, s2)):
            rank = len(s) + 1
            if not -rank <= a < rank or a % rank == 0:
                raise self.error(f"axis {a} is not a non-batch axis of an input of shape "
                                 f"{(None, *s)}")
            resolved.append(a % rank)
        a1, a2 = resolved
        if s1[a1 - 1] != s2[a2 - 1]:
            raise self.error(f"dimension {s1[a1 - 1]} of input 0 (shape {(None, *s1)}, axis "
                             f"{a1}) != dimension {s2[a2 - 1]} of input 1 (shape {(None, *s2)}, "
                             f"axis {a2})")
        self._axes = (a1, a2)
        letters = "abcdefghijklmopqrstuvwxy"  # n is the batch, z the contracted axis
        l1 = list(letters[:len(s1)])
        l2 = list(letters[len(s1):len(s1) + len(s2)])
        l1[a1 - 1] = l2[a2 - 1] = "z"
        out = [c for c in l1 if c != "z"] + [c for c in l2 if c != "z"]
        self._subs = ("n" + "".join(l1), "n" + "".join(l2), "n" + "".join(out))
        shape = tuple(d for i, d in enumerate(s1) if i != a1 - 1) + \
            tuple(d for i, d in enumerate(s2) if i != a2 - 1)
        return shape or (1,)

    @staticmethod
    def _l2_normalize(x, axis):
        # tf.nn.l2_normalize: x / sqrt(max(sum(x²), 1e-12))
        s = (x * x).sum(axis=axis, keepdims=True)
        norm = np.sqrt(np.maximum(s, 1e-12)).astype(x.dtype, copy=False)
        u = x / norm

        def backward(du):
            dx = du / norm
            inside = s > 1e-12  # past the clamp the norm is a constant
            return dx - np.where(inside, u * (du * u).sum(axis=axis, keepdims=True) / norm, 0)

        return u, backward

    def forward(self, xs, training):
        x1, x2 = xs
        s1, s2, so = self._subs
        back1 = back2 = None
        if self.normalize:
            x1, back1 = self._l2_normalize(x1, self._axes[0])
            x2, back2 = self._l2_normalize(x2, self._axes[1])
        y = np.einsum(f"{s1},{s2}->{so}", x1, x2)
        flat = y.ndim == 1
        if flat:
            y = y.reshape(-1, 1)

        def backward(dy):
            if flat:
                dy = dy.reshape(-1)
            d1 = np.einsum(f"{so},{s2}->{s1}", dy, x2)
            d2 = np.einsum(f"{so},{s1}->{s2}", dy, x1)
            if self.normalize:
                d1, d2 = back1(d1), back2(d2)
            return [d1, d2]

        return y, backward
