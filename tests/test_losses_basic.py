import numpy as np
import pytest

from gradcheck import check_loss
from trainer.config.families import losses


def test_mse_value():
    yt = np.array([[0.0, 1.0], [1.0, 1.0]])
    yp = np.array([[0.5, 1.0], [0.0, 3.0]])
    np.testing.assert_allclose(losses.get("mse")(yt, yp), [0.125, 2.5])


def test_categorical_crossentropy_value_and_clip():
    yt = np.array([[0, 1, 0], [1, 0, 0]], float)
    yp = np.array([[0.2, 0.7, 0.1], [0.0, 0.5, 0.5]])
    v = losses.get("categorical_crossentropy")(yt, yp)
    np.testing.assert_allclose(v, [-np.log(0.7), -np.log(1e-7)], rtol=1e-6)


def test_binary_crossentropy_value():
    yt = np.array([[1.0], [0.0]])
    yp = np.array([[0.8], [0.3]])
    np.testing.assert_allclose(losses.get("binary_crossentropy")(yt, yp),
                               [-np.log(0.8 + 1e-7), -np.log(0.7 + 1e-7)])


def test_sparse_matches_dense(rng):
    yp = rng.dirichlet(np.ones(4), size=5)
    ids = np.array([0, 3, 1, 2, 2])
    dense = np.eye(4)[ids]
    np.testing.assert_allclose(losses.get("sparse_categorical_crossentropy")(ids, yp),
                               losses.get("categorical_crossentropy")(dense, yp))


@pytest.mark.parametrize("spec", [
    "mse", "binary_crossentropy", {"binary_crossentropy": {"from_logits": True}},
    {"binary_crossentropy": {"label_smoothing": 0.1}}, "categorical_crossentropy",
    {"categorical_crossentropy": {"from_logits": True, "label_smoothing": 0.2}},
])
def test_loss_gradients(rng, spec):
    loss = losses.get(spec)
    if "categorical" in str(spec):
        yt = np.eye(3)[[0, 2, 1, 1]]
        yp = rng.dirichlet(np.ones(3) * 3, size=4) if "logits" not in str(spec) \
            else rng.normal(size=(4, 3))
    else:
        yt = rng.integers(0, 2, size=(4, 2)).astype(float)
        yp = rng.uniform(0.1, 0.9, size=(4, 2)) if "logits" not in str(spec) \
            else rng.normal(size=(4, 2))
    check_loss(loss, yt, yp)


def test_sparse_gradient(rng):
    check_loss(losses.get("sparse_categorical_crossentropy"), np.array([1, 0, 2]),
               rng.dirichlet(np.ones(3) * 3, size=3))
