"""validation: {split: F, mode: tail|random|stratified}, and the rows it took."""

import numpy as np
import pytest

from data_helpers import fit_json, make_config
from trainer.data.pipeline import Split, validation_rows
from trainer.errors import DataError


def labelled(n=100, ratios=(0.6, 0.3, 0.1)):
    y = np.repeat(np.arange(len(ratios)), [int(n * r) for r in ratios])
    return Split({"x": np.arange(len(y), dtype=np.float32)[:, None]}, {"y": y})


def test_tail_takes_the_last_rows_like_keras():
    assert validation_rows(labelled(), 0.2, "tail", 0).tolist() == list(range(80, 100))


def test_random_is_seeded_and_sorted():
    a = validation_rows(labelled(), 0.2, "random", 0)
    assert len(a) == 20 and np.all(np.diff(a) > 0)
    assert np.array_equal(a, validation_rows(labelled(), 0.2, "random", 0))
    assert not np.array_equal(a, validation_rows(labelled(), 0.2, "random", 1))


def test_stratified_keeps_class_ratios():
    split = labelled(200)
    rows = validation_rows(split, 0.25, "stratified", 0)
    counts = np.bincount(split.y["y"][rows])
    assert counts.tolist() == [30, 15, 5]  # 25% of 120, 60, 20


def test_stratified_with_text_and_one_hot_labels():
    y = np.array(["a"] * 40 + ["b"] * 10)
    rows = validation_rows(Split({"x": np.zeros((50, 1))}, {"y": y}), 0.2, "stratified", 0)
    assert sorted(y[rows].tolist()) == ["a"] * 8 + ["b"] * 2
    hot = np.eye(2)[(y == "b").astype(int)]
    rows = validation_rows(Split({"x": np.zeros((50, 1))}, {"y": hot}), 0.2, "stratified", 0)
    assert hot[rows, 1].sum() == 2


def test_tail_counts_rows_as_keras_does():
    # Keras: split_at = floor(n * (1 - f)); 10 rows at 0.25 → 7 train, 3 validation
    assert validation_rows(labelled(10, (1,)), 0.25, "tail", 0).tolist() == [7, 8, 9]
    assert len(validation_rows(labelled(10, (1,)), 0.25, "random", 0)) == 3


def test_a_split_leaving_nothing_is_an_error():
    with pytest.raises(DataError, match="empty split"):
        validation_rows(labelled(3, (1,)), 0.9, "tail", 0)


@pytest.mark.parametrize("mode", ["tail", "random", "stratified"])
def test_fit_writes_the_validation_rows(tmp_path, rng, mode):
    x = rng.normal(size=(60, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(60) % 3)
    p = make_config(tmp_path, {"train": {"path": "d.npz", "y": "y"},
                               "validation": {"split": 0.2, "mode": mode}})
    fit_json(p, tmp_path / "r")
    rows = np.load(tmp_path / "r/validation_rows.npy")
    assert len(rows) == 12 and len(set(rows.tolist())) == 12
    if mode == "tail":
        assert rows.tolist() == list(range(48, 60))
    if mode == "stratified":
        assert np.bincount(rows % 3).tolist() == [4, 4, 4]
