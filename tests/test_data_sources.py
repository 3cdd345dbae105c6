"""Each file source (npz, npy, CSV, HDF5) read from small files made in tmp_path."""

import h5py
import numpy as np
import pytest

from data_helpers import cli, fit_json, make_config
from trainer.config.loader import load
from trainer.data.lazy import H5Array, MemmapArray
from trainer.data.sources import load_source


@pytest.fixture
def xy(rng):
    x = rng.normal(size=(60, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1)
    return x, y


def source(tmp_path, spec):
    path = make_config(tmp_path, {"train": spec})
    cfg = load(path)
    return load_source(cfg, cfg["data"]["train"], ("data", "train"))


def test_npz_keys(tmp_path, xy):
    np.savez(tmp_path / "d.npz", feats=xy[0], labels=xy[1], w=np.ones(60))
    x, y, sw = source(tmp_path, {"path": "d.npz", "x": "feats", "y": "labels",
                                 "sample_weight": "w"})
    assert np.array_equal(x, xy[0]) and np.array_equal(y, xy[1]) and sw.shape == (60,)


@pytest.mark.parametrize("lazy", [True, False])
def test_npy_pair_memory_mapped_or_loaded(tmp_path, xy, lazy):
    np.save(tmp_path / "x.npy", xy[0])
    np.save(tmp_path / "y.npy", xy[1])
    x, y, sw = source(tmp_path, {"path": "x.npy", "y_path": "y.npy", "lazy": lazy})
    assert sw is None
    assert isinstance(x, MemmapArray) == lazy
    assert np.array_equal(x[np.arange(60)], xy[0]) and np.array_equal(y[np.arange(60)], xy[1])


def test_npy_fit_lazy_matches_in_memory(tmp_path, xy):
    np.save(tmp_path / "x.npy", xy[0])
    np.save(tmp_path / "y.npy", xy[1])
    losses = []
    for lazy in (True, False):
        p = make_config(tmp_path, {"train": {"path": "x.npy", "y_path": "y.npy", "lazy": lazy},
                                   "preprocess": {"x": ["standardize"]}},
                        name=f"c{lazy}.yaml")
        losses.append(fit_json(p, tmp_path / f"r{lazy}", "--set", "fit.shuffle=false")
                      ["metrics"]["loss"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


def write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")


def test_csv_names_indices_and_rest(tmp_path):
    write_csv(tmp_path / "d.csv", ["a", "b", "label", "c", "w"],
              [[1, 2, "cat", 3, 0.5], [4, 5, "dog", 6, 1.0], [7, 8, "cat", 9, 2.0]])
    x, y, sw = source(tmp_path, {"path": "d.csv", "x": "rest", "y": "label",
                                 "sample_weight": "w"})
    assert x.dtype == np.float32 and x.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert y.tolist() == ["cat", "dog", "cat"] and sw.tolist() == [0.5, 1.0, 2.0]
    x, y, _ = source(tmp_path, {"path": "d.csv", "x": ["c", "a"], "y": 2})
    assert x.tolist() == [[3, 1], [6, 4], [9, 7]] and y[1] == "dog"
    x, _, _ = source(tmp_path, {"path": "d.csv", "x": [0, 3]})
    assert x.tolist() == [[1, 3], [4, 6], [7, 9]]


def test_csv_without_header_whole_number_labels_and_blanks(tmp_path):
    (tmp_path / "d.csv").write_text("1.5,,0\n2.5,3,2\n")
    x, y, _ = source(tmp_path, {"path": "d.csv", "header": False, "y": 2})
    assert y.dtype == np.int64 and y.tolist() == [0, 2]
    assert x[0, 0] == 1.5 and np.isnan(x[0, 1])  # a blank is NaN: caught before training


def test_csv_text_labels_train_with_one_hot_and_class_ids(tmp_path, rng):
    names = np.array(["red", "green", "blue"])
    x = rng.normal(size=(48, 4)).round(3)
    rows = [list(r) + [names[i % 3]] for i, r in enumerate(x)]
    write_csv(tmp_path / "d.csv", ["f1", "f2", "f3", "f4", "colour"], rows)
    p = make_config(tmp_path, {"train": {"path": "d.csv", "y": "colour"},
                               "preprocess": {"y": ["class_ids"]}})
    fit_json(p, tmp_path / "r1")
    p = make_config(tmp_path, {"train": {"path": "d.csv", "y": "colour"},
                               "preprocess": {"y": ["one_hot"]}},
                    loss="categorical_crossentropy", name="c2.yaml")
    fit_json(p, tmp_path / "r2")
    with h5py.File(tmp_path / "r2/checkpoints/last.h5") as f:
        classes = f["trainer_state/arrays/y/dense_1/0/classes"][()]  # the stored mapping
    assert [c.decode() for c in classes] == ["blue", "green", "red"]


def test_hdf5_dataset_paths_lazy_and_eager(tmp_path, xy):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("train/x", data=xy[0], chunks=(8, 4))
        f.create_dataset("train/y", data=xy[1])
    x, y, _ = source(tmp_path, {"path": "d.h5", "x": "/train/x", "y": "train/y"})
    assert isinstance(x, H5Array) and x.shape == (60, 4) and len(y) == 60
    assert np.array_equal(x.take([5, 1, 59]), xy[0][[5, 1, 59]])
    x, _, _ = source(tmp_path, {"path": "d.h5", "x": "train/x", "lazy": False})
    assert isinstance(x, np.ndarray) and np.array_equal(x, xy[0])


def test_hdf5_fit_then_evaluate(tmp_path, xy):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("x", data=xy[0], chunks=(16, 4))
        f.create_dataset("y", data=xy[1], chunks=(16,))
    p = make_config(tmp_path, {"train": {"path": "d.h5", "y": "y"},
                               "test": {"path": "d.h5", "y": "y"},
                               "preprocess": {"x": ["standardize"]}}, epochs=2)
    fit_json(p, tmp_path / "r")
    r = cli("evaluate", tmp_path / "r", "--json")
    assert r.exit_code == 0, r.output
    assert 0 <= float(r.stdout.split('"accuracy": ')[1].rstrip("}\n")) <= 1


def test_run_config_keeps_absolute_data_paths(tmp_path, xy):
    np.savez(tmp_path / "d.npz", x=xy[0], y=xy[1])
    p = make_config(tmp_path, {"train": {"path": "d.npz", "y": "y"},
                               "validation": {"split": 0.25}})
    fit_json(p, tmp_path / "elsewhere" / "r")
    assert str(tmp_path / "d.npz") in (tmp_path / "elsewhere/r/config.yaml").read_text()
    assert cli("evaluate", tmp_path / "elsewhere/r", "--json").exit_code == 0


@pytest.mark.parametrize("suffix", [".h5", ".csv", ".npy"])
def test_sample_weight_from_each_file_type(tmp_path, xy, suffix):
    x, y = xy
    w = np.zeros(60)  # every row weighted 0: the weighted loss is 0
    if suffix == ".h5":
        with h5py.File(tmp_path / "d.h5", "w") as f:
            f["x"], f["y"], f["w"] = x, y, w
        spec = {"path": "d.h5", "y": "y", "sample_weight": "w"}
    elif suffix == ".csv":
        write_csv(tmp_path / "d.csv", ["a", "b", "c", "d", "y", "w"],
                  [list(r) + [int(c), 0.0] for r, c in zip(x, y)])
        spec = {"path": "d.csv", "y": "y", "sample_weight": "w"}
    else:
        for name, a in (("x", x), ("y", y), ("w", w)):
            np.save(tmp_path / f"{name}.npy", a)
        spec = {"path": "x.npy", "y_path": "y.npy", "sample_weight_path": "w.npy"}
    p = make_config(tmp_path, {"train": spec})
    assert fit_json(p, tmp_path / "r")["metrics"]["loss"] == 0


def test_hdf5_text_labels(tmp_path, xy):
    names = np.array(["ant", "bee", "cow"])
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"] = xy[0]
        f.create_dataset("y", data=names[xy[1]].tolist(), dtype=h5py.string_dtype())
        f["y_fixed"] = np.char.encode(names[xy[1]], "utf-8")
    for key in ("y", "y_fixed"):
        _, y, _ = source(tmp_path, {"path": "d.h5", "y": key})
        assert y.dtype.kind == "U" and np.array_equal(y, names[xy[1]])
    p = make_config(tmp_path, {"train": {"path": "d.h5", "y": "y"},
                               "preprocess": {"y": ["one_hot"]}},
                    loss="categorical_crossentropy", name="c.yaml")
    fit_json(p, tmp_path / "r")


def test_csv_columns_for_several_inputs(tmp_path):
    write_csv(tmp_path / "d.csv", ["a", "b", "c", "label"], [[1, 2, 3, 0], [4, 5, 6, 1]])
    x, y, _ = source(tmp_path, {"path": "d.csv", "x": {"left": ["a"], "right": "rest"},
                                "y": {"out": "label"}})
    assert x["left"].tolist() == [[1], [4]] and x["right"].tolist() == [[1, 2, 3], [4, 5, 6]]
    assert y["out"].tolist() == [0, 1]
