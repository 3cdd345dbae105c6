"""Helpers for testing the components you write yourself — the same ones trainer's own
tests use.

``check_loss_gradient`` checks a loss's ``gradient`` against central finite
differences of its per-sample values in float64, the way every built-in loss is
checked::

    from trainer.testing import check_loss_gradient
    check_loss_gradient(FocalLoss(gamma=2.0), y_true, y_pred)   # raises if they differ

Keep ``y_pred`` away from kinks (where a clip, max or abs switches): there the two
one-sided slopes differ and no analytic gradient matches a central difference.
"""

import numpy as np


def numeric_gradient(fn, array, h=1e-6):
    """d fn() / d array by central differences, ``array`` changed in place and restored
    element by element (``fn`` reads it). ``fn`` returns a float."""
    grad = np.zeros_like(array)
    flat = array.reshape(-1)
    g = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = fn()
        flat[i] = old - h
        down = fn()
        flat[i] = old
        g[i] = (up - down) / (2 * h)
    return grad


def assert_close(name, analytic, numeric, rtol, atol):
    """The analytic gradient matches the numeric one, else an AssertionError naming
    ``name`` and the worst element."""
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol,
                               err_msg=f"gradient of {name}")


def check_loss_gradient(loss, y_true, y_pred, h=1e-6, rtol=1e-5, atol=1e-8):
    """Check ``loss``'s gradient with respect to ``y_pred`` in float64.

    ``loss`` is a loss of your own (a class with ``call(y_true, y_pred)`` → one value
    per sample and ``gradient(y_true, y_pred)`` → d value_i / d y_pred) or a built-in
    one. Compares the gradient of sum_i value_i with central differences of step
    ``h``; raises AssertionError when they differ beyond ``rtol``/``atol`` or when
    the shapes are wrong. Returns the analytic gradient."""
    values_of = getattr(loss, "call", None) or loss
    name = getattr(loss, "ref", None) or type(loss).__name__
    y_true = np.asarray(y_true)
    if y_true.dtype.kind == "f":
        y_true = y_true.astype(np.float64)
    y_pred = np.array(y_pred, dtype=np.float64)
    values = np.asarray(values_of(y_true, y_pred))
    if values.shape != (len(y_pred),):
        raise AssertionError(f"{name}: the loss returned shape {values.shape} for a batch of "
                             f"{len(y_pred)}; it must return one value per sample")
    analytic = np.asarray(loss.gradient(y_true, y_pred), dtype=np.float64)
    if analytic.shape != y_pred.shape:
        raise AssertionError(f"{name}: gradient has shape {analytic.shape}, y_pred "
                             f"{y_pred.shape}; it must be d loss/d y_pred, shape of y_pred")
    numeric = numeric_gradient(lambda: float(np.sum(values_of(y_true, y_pred))), y_pred, h)
    assert_close(name, analytic, numeric, rtol, atol)
    return analytic
