"""Built-in synthetic datasets, and class_weight 'balanced'."""

import numpy as np
import pytest

from trainer.app.fit import class_weights
from trainer.data.pipeline import Split
from trainer.config.families import datasets


def load(name, **args):
    return datasets.get({name: args}).load()


@pytest.mark.parametrize("name,classes", [("blobs", 3), ("moons", 2), ("spirals", 3)])
def test_seeded_with_a_fixed_train_test_split(name, classes):
    x, y = load(name, n_samples=200, subset="all")
    assert x.shape == (200, 2) and x.dtype == np.float32 and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(classes))
    assert np.array_equal(x, load(name, n_samples=200, subset="all")[0])  # same seed, same
    assert not np.array_equal(x, load(name, n_samples=200, subset="all", seed=1)[0])
    xtr, _ = load(name, n_samples=200, subset="train")
    xte, _ = load(name, n_samples=200, subset="test")
    assert len(xtr) == 160 and len(xte) == 40
    rows = {tuple(r) for r in x.tolist()}
    assert {tuple(r) for r in np.concatenate([xtr, xte]).tolist()} == rows


def test_classes_and_noise_arguments():
    _, y = load("spirals", n_samples=100, classes=5, subset="all")
    assert np.bincount(y).tolist() == [20] * 5
    x, y = load("blobs", n_samples=90, classes=2, noise=0.0, n_features=3, subset="all")
    assert x.shape == (90, 3) and len(np.unique(x[y == 0], axis=0)) == 1  # all at the centre
    x, _ = load("moons", n_samples=50, noise=0.0, subset="all")
    r_outer = np.hypot(x[:, 0], x[:, 1])
    r_inner = np.hypot(x[:, 0] - 1, x[:, 1] - 0.5)
    assert np.all(np.isclose(r_outer, 1) | np.isclose(r_inner, 1))


def test_balanced_class_weight_is_n_over_k_times_count():
    y = np.array([0] * 6 + [1] * 3 + [3] * 1)
    cw = class_weights("balanced", Split({"x": np.zeros((10, 1))}, {"y": y}))
    # sklearn compute_class_weight('balanced'): n_samples / (n_classes * bincount)
    assert cw == pytest.approx({0: 10 / (3 * 6), 1: 10 / (3 * 3), 3: 10 / (3 * 1)})
    hot = np.eye(4)[y]
    assert class_weights("balanced", Split({"x": np.zeros((10, 1))}, {"y": hot})) == cw
    assert class_weights({0: 2, 1: 0.5}, None) == {0: 2.0, 1: 0.5}
