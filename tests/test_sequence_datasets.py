import numpy as np
import pytest

from trainer.errors import ConfigError
from trainer.config.families import datasets


def load(name, **args):
    return datasets.get({name: args}).load()


def test_marker_order_labels_follow_order_and_distance():
    x, y = load("marker_order", subset="all", n=300, length=16, min_length=8)
    assert x.shape == (300, 16) and x.dtype == np.int32 and set(np.unique(y)) == {0, 1, 2, 3}
    for row, label in zip(x, y):
        a, b = int(np.flatnonzero(row == 1)[0]), int(np.flatnonzero(row == 2)[0])
        assert label == 2 * (b < a) + (abs(a - b) > 16 // 4)
        n = np.count_nonzero(row)
        assert 8 <= n <= 16 and np.all(row[:16 - n] == 0)  # pre-padding, like Keras


def test_subsets_are_seeded_and_split():
    x_tr, _ = load("marker_order", n=100)
    x_te, _ = load("marker_order", subset="test", n=100)
    assert len(x_tr) == 80 and len(x_te) == 20
    np.testing.assert_array_equal(x_tr, load("marker_order", n=100)[0])
    assert not np.array_equal(load("marker_order", n=100, seed=1)[0], x_tr)


def test_token_topics_plant_the_class_pair():
    x, y = load("token_topics", subset="all", n=200, classes=4)
    for row, label in zip(x, y):
        pairs = set(zip(row[:-1].tolist(), row[1:].tolist()))
        assert (label + 1, (label + 1) % 4 + 1) in pairs
        others = {(k + 1, (k + 1) % 4 + 1) for k in range(4) if k != label}
        assert not pairs & others  # no other class's pair, even across slots


def test_bad_arguments():
    with pytest.raises(ConfigError, match="min_length"):
        load("marker_order", length=8, min_length=10)
