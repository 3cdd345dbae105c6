"""The one finite-difference gradient helper every layer and loss test uses (float64);
its core (and the loss check) is public, trainer.testing, for users' own losses.

Central differences on a random projection of the output: for a scalar
L = sum(r * f(x)), compare dL/dx from backward with (L(x+h) - L(x-h)) / 2h, for the
inputs and for every weight. Tests keep inputs away from kinks (relu at 0, clip edges).
"""

import numpy as np

from trainer.testing import assert_close, check_loss_gradient, numeric_gradient


_numeric = numeric_gradient  # the name the tests import
_close = assert_close


def check_layer(layer, x, rng=None, training=True, h=1e-6, rtol=1e-5, atol=1e-7):
    """Build ``layer`` on x (a float64 array, or a list for multi-input layers and
    layers given extra inputs) and check the gradients of its inputs and weights.
    Returns the forward output."""
    rng = rng or np.random.default_rng(0)
    xs = x if isinstance(x, list) else [x]
    xs = [np.asarray(a, np.float64) for a in xs]
    listed = layer.multi_input or (layer.extra_inputs and len(xs) > 1)  # as Graph.add
    if not layer.built:
        layer.dtype = np.float64
        shapes = [a.shape[1:] for a in xs]
        layer.output_shape = layer.build(shapes if listed else shapes[0], rng)
        layer.built = True
    layer.cast(np.float64)
    arg = lambda: xs if listed else xs[0]  # noqa: E731
    noise = getattr(layer, "rng", None)

    def run():
        if noise is not None:  # same dropout mask on every evaluation
            layer.rng = np.random.default_rng(1)
        y, back = layer.forward(arg(), training)
        return y, back

    y, back = run()
    assert y.shape[1:] == tuple(layer.output_shape), (y.shape, layer.output_shape)
    r = np.random.default_rng(2).normal(size=y.shape)
    layer.zero_grads()
    dx = back(r)
    dxs = dx if listed else [dx]
    scalar = lambda: float((run()[0] * r).sum())  # noqa: E731
    for i, (a, d) in enumerate(zip(xs, dxs)):
        if d is None:
            continue
        assert d.shape == a.shape, f"input {i} gradient shape {d.shape} != {a.shape}"
        _close(f"input {i}", d, _numeric(scalar, a, h), rtol, atol)
    analytic = {k: v.copy() for k, v in layer.grads.items()}
    for name, p in layer.params.items():
        assert analytic[name].shape == p.shape
        _close(f"weight {name}", analytic[name], _numeric(scalar, p, h), rtol, atol)
    return y


def check_loss(loss, y_true, y_pred, h=1e-6, rtol=1e-5, atol=1e-8):
    """Gradient of sum(loss(y_true, y_pred)) with respect to y_pred: the public helper
    users check their own losses with (trainer.testing.check_loss_gradient)."""
    check_loss_gradient(loss, y_true, y_pred, h=h, rtol=rtol, atol=atol)


def check_model(model, xs, ys, h=1e-6, rtol=1e-5, atol=1e-8):
    """A whole model in float64: the gradient ``Model.compute_gradients`` leaves in
    each weight's ``grads`` (losses, masks, weight and activity penalties, fused
    softmax) against central differences of the total loss it returns. Use models
    without dropout or noise (the forward must be deterministic)."""
    for layer in model.layers:
        layer.dtype = np.float64
        for store in (layer.params, layer.grads, layer.buffers):
            for k in store:
                store[k] = store[k].astype(np.float64)
    xs = [np.asarray(x) for x in xs]
    if hasattr(model, "_int_inputs"):
        xs = [x if i in model._int_inputs else x.astype(np.float64) for i, x in enumerate(xs)]
    model.cast_inputs = lambda arrays: arrays  # keep float64 inputs

    def total():
        return model.compute_gradients(xs, ys)[0]

    total()
    analytic = {(layer.name, k): layer.grads[k].copy() for layer in model.layers
                for k in layer.params}
    for layer in model.layers:
        for k, w in layer.params.items():
            _close(f"{layer.name}.{k}", analytic[(layer.name, k)], _numeric(total, w, h),
                   rtol, atol)
