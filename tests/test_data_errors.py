"""Bad data fails before training through the CLI: exit 3 and a message naming it."""

import h5py
import numpy as np
import pytest

from data_helpers import cli, make_config


@pytest.fixture
def good(rng):
    return rng.normal(size=(40, 4)).astype(np.float32), np.arange(40) % 3


def fails(tmp_path, data, *expected, **kw):
    p = make_config(tmp_path, data, **kw)
    r = cli("fit", p, "--run-dir", tmp_path / "r")
    assert r.exit_code == 3, r.output
    for text in expected:
        assert text in r.output, r.output
    assert "Traceback" not in r.output
    return r.output


def test_missing_file(tmp_path):
    fails(tmp_path, {"train": {"path": "nope.npz"}}, "data file not found", "nope.npz",
          "data.train.path")


def test_missing_npy_label_file(tmp_path, good):
    np.save(tmp_path / "x.npy", good[0])
    fails(tmp_path, {"train": {"path": "x.npy", "y_path": "y.npy"}}, "data file not found",
          "y.npy", "data.train.y_path")


def test_missing_key_lists_what_is_there(tmp_path, good):
    np.savez(tmp_path / "d.npz", x=good[0], labels=good[1])
    fails(tmp_path, {"train": {"path": "d.npz", "y": "y"}}, "no array 'y' for y",
          "the file has: labels, x")


def test_missing_hdf5_dataset_and_csv_column(tmp_path, good):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["group/x"] = good[0]
    fails(tmp_path, {"train": {"path": "d.h5", "x": "x"}}, "no array 'x'", "group/x")
    (tmp_path / "d.csv").write_text("a,b\n1,2\n")
    fails(tmp_path, {"train": {"path": "d.csv", "y": "label"}}, "no column 'label'",
          "the columns are: a, b")
    fails(tmp_path, {"train": {"path": "d.csv", "x": [5]}}, "column 5 for x does not exist")


def test_length_mismatch(tmp_path, good):
    np.savez(tmp_path / "d.npz", x=good[0], y=good[1][:30])
    fails(tmp_path, {"train": {"path": "d.npz", "y": "y"}}, "different numbers of rows",
          "x[input]: 40", "y[dense_1]: 30")


def test_shape_does_not_fit_the_model(tmp_path, good):
    np.savez(tmp_path / "d.npz", x=good[0][:, :3], y=good[1])
    fails(tmp_path, {"train": {"path": "d.npz", "y": "y"}}, "has shape (3,) per sample",
          "the model expects (4,)")


def test_nan_in_memory(tmp_path, good):
    x = good[0].copy()
    x[7, 1] = np.nan
    x[9, 0] = np.inf
    np.savez(tmp_path / "d.npz", x=x, y=good[1])
    fails(tmp_path, {"train": {"path": "d.npz", "y": "y"}}, "2 NaN/Inf values",
          "first in row 7")


def test_nan_in_lazy_hdf5_is_found_per_batch(tmp_path, rng):
    x = rng.normal(size=(600, 4)).astype(np.float32)
    x[500, 2] = np.nan  # beyond the rows checked before training
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(50, 4))
        f["y"] = np.arange(600) % 3
    fails(tmp_path, {"train": {"path": "d.h5", "y": "y"}}, "data.train", "NaN/Inf",
          "first in row 500")


def test_labels_out_of_range(tmp_path, good):
    np.savez(tmp_path / "d.npz", x=good[0], y=good[1] + 5)
    fails(tmp_path, {"train": {"path": "d.npz", "y": "y"}}, "3 classes",
          "class ids in [5, 7]")


def test_labels_out_of_range_in_lazy_hdf5(tmp_path, good):
    y = good[1].copy()
    y[-1] = 9
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"] = good[0]
        f["y"] = y
    fails(tmp_path, {"train": {"path": "d.h5", "y": "y"}}, "3 classes", "9")


def test_text_where_numbers_are_needed(tmp_path, good):
    np.savez(tmp_path / "d.npz", x=good[0], y=np.array(["a", "b"] * 20))
    fails(tmp_path, {"train": {"path": "d.npz", "y": "y"}}, "output 'dense_1' holds <U1",
          "class_ids")
    np.savez(tmp_path / "d.npz", x=good[0].astype(str), y=good[1])
    fails(tmp_path, {"train": {"path": "d.npz", "y": "y"}}, "input 'input' holds <U")
    (tmp_path / "d.csv").write_text("a,b,y\n1,x,0\n2,y,1\n")
    fails(tmp_path, {"train": {"path": "d.csv", "y": "y"}}, "x column 'b' holds text")


def test_object_arrays_are_refused(tmp_path, good):
    np.save(tmp_path / "x.npy", np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    fails(tmp_path, {"train": {"path": "x.npy"}}, "pickle")


def test_empty_arrays(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((0, 4), np.float32), y=np.zeros(0, int))
    fails(tmp_path, {"train": {"path": "d.npz", "y": "y"}}, "data.train holds no rows")
    (tmp_path / "d.csv").write_text("a,b,c,d,y\n")
    fails(tmp_path, {"train": {"path": "d.csv", "y": "y"}}, "holds no rows")


@pytest.mark.parametrize("suffix", [".npz", ".npy", ".h5"])
def test_truncated_files(tmp_path, good, suffix):
    full = tmp_path / f"full{suffix}"
    if suffix == ".npz":
        np.savez(full, x=good[0], y=good[1])
    elif suffix == ".npy":
        np.save(full, good[0])
    else:
        with h5py.File(full, "w") as f:
            f["x"] = good[0]
            f["y"] = good[1]
    data = full.read_bytes()
    (tmp_path / f"d{suffix}").write_bytes(data[:len(data) // 2])
    spec = {"path": f"d{suffix}"} if suffix == ".npy" else {"path": f"d{suffix}", "y": "y"}
    fails(tmp_path, {"train": spec}, f"d{suffix}", "not a readable")


def test_ragged_csv(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,y\n1,2,0\n3,1\n")
    fails(tmp_path, {"train": {"path": "d.csv", "y": "y"}}, "d.csv:3: 2 fields")


def test_unknown_label_at_validation(tmp_path, good):
    np.savez(tmp_path / "t.npz", x=good[0], y=np.array(["a", "b", "c"] * 13 + ["a"]))
    np.savez(tmp_path / "v.npz", x=good[0], y=np.array(["a", "z"] * 20))
    fails(tmp_path, {"train": {"path": "t.npz", "y": "y"},
                     "validation": {"path": "v.npz", "y": "y"},
                     "preprocess": {"y": ["class_ids"]}}, "['z'] are not among the classes")


@pytest.mark.parametrize("data,expected", [
    ({"train": {"dataset": "moons", "noize": 0.1}}, "unknown key 'noize'. Did you mean 'noise'?"),
    ({"train": {"dataset": "moonz"}}, "unknown dataset 'moonz'. Did you mean 'moons'?"),
    ({"train": {"path": "d.csv", "header": "yes"}}, "data.train.header: expected"),
    ({"train": {"dataset": "iris"}, "validation": {"split": 0.2, "mode": "tale"}},
     "data.validation.mode: 'tale' is not one of"),
    ({"train": {"dataset": "iris"}, "validation": {"dataset": "iris", "subset": "tset"}},
     "data.validation.subset: 'tset' is not one of"),
])
def test_data_section_mistakes_are_config_errors(tmp_path, data, expected):
    r = cli("fit", make_config(tmp_path, data), "--run-dir", tmp_path / "r")
    assert r.exit_code == 2 and expected in r.output, r.output


def test_a_built_in_dataset_too_big_for_memory_is_a_config_error(tmp_path):
    """Found by the attention-config fuzzer: n = 10**12 ended in 'internal error:
    MemoryError'. Sizes are config values: exit 2 naming the config line."""
    p = make_config(tmp_path, {"train": {"dataset": "token_topics", "n": 10**12}},
                    shape=(40,), classes=4)
    r = cli("fit", p, "--run-dir", tmp_path / "r")
    assert r.exit_code == 2, r.output
    assert "data.train: the built-in dataset 'token_topics'" in r.output
    assert "more memory than this machine has" in r.output and "config.yaml:" in r.output
    assert "Traceback" not in r.output and "internal error" not in r.output
