import numpy as np

from trainer.config.families import datasets


def load(**args):
    return datasets.get({"cifar_synthetic": args}).load()


def test_cifar_synthetic_shapes_and_determinism():
    x, y = load(n_train=60)
    assert x.shape == (60, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (60,) and set(np.unique(y)) == set(range(10))
    assert np.bincount(y).tolist() == [6] * 10  # balanced
    x2, y2 = load(n_train=60)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = load(n_train=60, seed=1)
    assert not np.array_equal(x, x3)


def test_test_split_does_not_depend_on_n_train():
    xa, ya = load(subset="test", n_train=10, n_test=30)
    xb, yb = load(subset="test", n_train=500, n_test=30)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    xt, _ = load(subset="train", n_train=30)
    assert not np.array_equal(xa, xt)
    xall, yall = load(subset="all", n_train=30, n_test=30)
    assert len(xall) == 60 and np.array_equal(xall[30:], xa)


def test_classes_differ_more_than_noise():
    """The class means are far apart: there is something to learn."""
    x, y = load(n_train=400)
    flat = x.reshape(len(x), -1).astype(np.float64)
    means = np.stack([flat[y == k].mean(0) for k in range(10)])
    between = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert between[~np.eye(10, dtype=bool)].min() > 100
