"""Each preprocessing step, and its learnt state round-tripping through a run."""

import json

import numpy as np
import pytest

from data_helpers import cli, fit_json, make_config
from trainer.errors import ConfigError, DataError
from trainer.config.families import preprocessing


def step(spec):
    return preprocessing.get(spec)


def fitted(spec, array, pieces=1):
    s = step(spec)
    s.begin_fit()
    for part in np.array_split(array, pieces):
        s.partial_fit(part)
    s.end_fit()
    return s


def test_standardize_per_feature_from_training_rows(rng):
    x = rng.normal(3, 2, size=(500, 3))
    x[:, 2] = 7.0  # a constant feature keeps scale 1
    s = fitted("standardize", x, pieces=7)  # streaming in pieces = all at once
    np.testing.assert_allclose(s.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.std[:2], x[:, :2].std(0), rtol=1e-10)
    out = s(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:, :2].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(out[:, :2].std(0), 1, rtol=1e-5)
    assert np.all(out[:, 2] == 0)


@pytest.mark.parametrize("per,shape", [("channel", (1, 1, 3)), ("global", (1, 1, 1)),
                                       ("feature", (4, 5, 3))])
def test_standardize_per_channel_and_global(rng, per, shape):
    x = rng.normal(size=(20, 4, 5, 3)) * [1, 2, 3] + [0, 10, 20]
    s = fitted({"standardize": {"per": per}}, x, pieces=3)
    axes = {"channel": (0, 1, 2), "global": (0, 1, 2, 3), "feature": (0,)}[per]
    assert s.mean.shape == shape
    np.testing.assert_allclose(s.mean, x.mean(axis=axes, keepdims=True)[0], rtol=1e-10)
    np.testing.assert_allclose(s.std, x.std(axis=axes, keepdims=True)[0], rtol=1e-10)


def test_normalize_to_a_range_from_training_min_max(rng):
    x = rng.uniform(-5, 5, size=(100, 2))
    x[:, 1] = 1.0
    s = fitted({"normalize": {"low": -1, "high": 1}}, x, pieces=4)
    out = s(x)
    assert out[:, 0].min() == pytest.approx(-1) and out[:, 0].max() == pytest.approx(1)
    assert np.all(out[:, 1] == -1)  # constant → low
    assert s(np.array([[x[:, 0].max() * 2, 1.0]]))[0, 0] > 1  # outside train range: outside


def test_clip_cast_reshape():
    x = np.arange(12, dtype=np.float64).reshape(2, 6) - 3
    assert step({"clip": {"min": 0, "max": 5}})(x).min() == 0
    assert step({"clip": {"max": 5}})(x).max() == 5
    with pytest.raises(ConfigError, match="min, max or both"):
        step({"clip": {}})
    assert step({"cast": "int32"})(x).dtype == np.int32
    assert step({"reshape": [2, 3, 1]})(x).shape == (2, 2, 3, 1)
    assert step({"reshape": [-1, 2]})(x).shape == (2, 3, 2)
    with pytest.raises(DataError, match=r"cannot become \(4, 4\)"):
        step({"reshape": [4, 4]})(x)
    with pytest.raises(DataError, match="class_ids or one_hot"):
        step({"cast": "float32"})(np.array(["a", "b"]))


def test_one_hot_and_class_ids_learn_a_sorted_mapping_and_store_it():
    y = np.array(["dog", "cat", "eel", "cat"])
    s = fitted("one_hot", y, pieces=2)
    assert s.classes == ["cat", "dog", "eel"]
    assert s(np.array([["eel"], ["cat"]])).tolist() == [[0, 0, 1], [1, 0, 0]]
    with pytest.raises(DataError, match=r"\['fox'\] are not among the classes"):
        s(np.array(["fox"]))
    state = s.get_state()
    assert state["classes"].dtype.kind == "S"  # bytes: HDF5-storable
    t = step("class_ids")
    t.set_state(state)
    assert t(y).tolist() == [1, 0, 2, 0]
    given = fitted({"class_ids": {"classes": ["eel", "dog", "cat"]}}, y)
    assert given(y).tolist() == [1, 2, 0, 2]
    assert fitted("class_ids", np.array([10, 30, 20]))(np.array([30, 10])).tolist() == [2, 0]


def test_to_categorical_learns_num_classes_unless_given():
    s = fitted("to_categorical", np.array([0, 4, 2]), pieces=2)
    assert s.num_classes == 5 and s(np.array([4])).tolist() == [[0, 0, 0, 0, 1]]
    with pytest.raises(DataError, match=r"in \[0, 4\]"):
        s(np.array([5]))
    assert not step({"to_categorical": 3}).learns


def test_state_round_trips_through_evaluate(tmp_path, rng):
    """evaluate reuses the statistics and the label mapping fitted on the training
    data: the training file can even be gone."""
    names = np.array(["ant", "bee", "cow"])
    x = rng.normal(5, 3, size=(90, 6)).astype(np.float32)
    y = names[np.arange(90) % 3]
    x[:, 0] += np.arange(90) % 3 * 4
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "test.npz", x=x[:30] * 1.5 + 2, y=y[:30])  # other statistics
    p = make_config(tmp_path, {
        "train": {"path": "train.npz", "y": "y"},
        "validation": {"path": "test.npz", "y": "y"},
        "test": {"path": "test.npz", "y": "y"},
        "preprocess": {"x": ["standardize", {"normalize": {"low": -1, "high": 1}},
                             {"clip": {"min": -1.5, "max": 1.5}}, {"cast": "float64"},
                             {"reshape": [3, 2]}],
                       "y": ["one_hot"]}}, shape=(3, 2), loss="categorical_crossentropy",
        epochs=2)
    text = p.read_text().replace("  layers:\n", "  layers:\n    - Flatten\n")
    p.write_text(text)
    logged = fit_json(p, tmp_path / "r")["metrics"]
    (tmp_path / "train.npz").unlink()
    r = cli("evaluate", tmp_path / "r", "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["loss"] == pytest.approx(logged["val_loss"], rel=1e-6)
    assert result["accuracy"] == pytest.approx(logged["val_accuracy"])
