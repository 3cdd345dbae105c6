"""Lazy HDF5 reading: only the rows asked for are read, in chunk-aligned blocks;
the block shuffle visits every row exactly once per epoch, deterministically."""

import h5py
import numpy as np
import pytest

from data_helpers import fit_json, make_config
from trainer.data import lazy
from trainer.data.lazy import H5Array
from trainer.data.pipeline import Split, batches


@pytest.fixture
def h5(tmp_path, rng):
    x = rng.normal(size=(1000, 4)).astype(np.float32)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(50, 4))
        return tmp_path / "d.h5", x


def open_array(path, monkeypatch, block_bytes):
    monkeypatch.setattr(lazy, "BLOCK_BYTES", block_bytes)
    with h5py.File(path) as f:
        return H5Array(str(path), "x", f["x"])


def test_take_reads_only_the_blocks_holding_the_rows(h5, monkeypatch):
    path, x = h5
    a = open_array(path, monkeypatch, 50 * 16)  # one chunk (50 rows of 16 bytes) a block
    assert a.block == 50
    spans = []
    read = a._read
    a._read = lambda start, stop: spans.append((start, stop)) or read(start, stop)
    assert np.array_equal(a.take([120, 101, 149]), x[[120, 101, 149]])
    assert spans == [(100, 150)]  # 50 of 1000 rows came from disk
    a.take([130, 149])  # the block is cached
    assert spans == [(100, 150)]
    a.take([999, 0])
    assert spans == [(100, 150), (0, 50), (950, 1000)]
    assert a.reads == 3


def test_block_size_is_a_whole_number_of_chunks(h5, monkeypatch):
    a = open_array(h5[0], monkeypatch, 50 * 16 * 3 + 7)
    assert a.block == 150


@pytest.mark.parametrize("n,block,batch", [(1000, 150, 32), (7, 3, 2), (100, 100, 10)])
def test_block_shuffle_covers_every_row_once_and_is_deterministic(n, block, batch):
    plans = [batches(n, batch, True, seed=3, epoch=e, block=block) for e in (0, 0, 1)]
    orders = [np.concatenate(p) for p in plans]
    for order in orders:
        assert sorted(order.tolist()) == list(range(n))
    assert np.array_equal(orders[0], orders[1])
    if n > block:
        assert not np.array_equal(orders[0], orders[2])  # a new order per epoch
    # rows of one block come together: the block index changes once per block
    blocks = orders[0] // block
    assert (np.diff(blocks) != 0).sum() == -(-n // block) - 1
    assert not np.array_equal(orders[0], np.arange(n))


def test_one_epoch_reads_each_block_once(h5, monkeypatch):
    path, x = h5
    a = open_array(path, monkeypatch, 50 * 16 * 2)
    split = Split({"x": a}, {})
    for rows in batches(len(split), 32, True, seed=0, epoch=0, block=split.block):
        split.take(rows)
    assert a.reads == 10  # 1000 rows / 100-row blocks


def test_validation_split_of_a_lazy_source_stays_lazy(h5, monkeypatch):
    path, x = h5
    a = open_array(path, monkeypatch, 50 * 16)
    split = Split({"x": a}, {"y": np.arange(1000) % 3})
    val = split.subset(np.arange(900, 1000))
    assert val.lazy and len(val) == 100
    xs, ys, _ = val.take([0, 99])
    assert np.array_equal(xs[0], x[[900, 999]]) and ys[0].tolist() == [0, 0]
    assert a.reads == 2


def test_training_from_hdf5_matches_in_memory_when_not_shuffled(tmp_path, rng):
    x = rng.normal(size=(80, 4)).astype(np.float32) * 10 + 3
    y = (x[:, 0] > 3).astype(np.int64)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(10, 4))
        f.create_dataset("y", data=y, chunks=(10,))
    np.savez(tmp_path / "d.npz", x=x, y=y)
    out = []
    for name in ("d.h5", "d.npz"):
        p = make_config(tmp_path, {"train": {"path": name, "y": "y"},
                                   "validation": {"split": 0.25, "mode": "random"},
                                   "preprocess": {"x": ["standardize", {"clip": {"min": -2,
                                                                             "max": 2}}]}},
                        classes=2, epochs=2, name=f"{name}.yaml")
        out.append(fit_json(p, tmp_path / f"run_{name}", "--set", "fit.shuffle=false")["metrics"])
    assert out[0] == pytest.approx(out[1], rel=1e-6)


def test_shuffled_hdf5_training_is_deterministic(tmp_path, rng):
    x = rng.normal(size=(80, 4)).astype(np.float32)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(10, 4))
        f.create_dataset("y", data=(x[:, 0] > 0).astype(np.int64))
    p = make_config(tmp_path, {"train": {"path": "d.h5", "y": "y"}}, classes=2, epochs=2)
    a, b = (fit_json(p, tmp_path / r)["metrics"] for r in ("a", "b"))
    assert a == b


def test_balanced_class_weight_streams_lazy_labels(tmp_path, rng):
    from trainer.app.fit import class_weights
    from trainer.config.loader import load
    from trainer.data.pipeline import prepare

    names = np.array(["a", "b", "c"])
    y = names[np.repeat([0, 1, 2], [60, 30, 10])]
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("x", data=rng.normal(size=(100, 4)).astype(np.float32), chunks=(10, 4))
        f.create_dataset("y", data=y.tolist(), dtype=h5py.string_dtype())
    p = make_config(tmp_path, {"train": {"path": "d.h5", "y": "y"},
                               "preprocess": {"y": ["one_hot"]}},
                    loss="categorical_crossentropy")
    splits, _ = prepare(load(p), ["input"], ["dense_1"], need=("train",))
    assert splits["train"].lazy
    cw = class_weights("balanced", splits["train"])
    assert cw == pytest.approx({0: 100 / 180, 1: 100 / 90, 2: 100 / 30})
    fit_json(p, tmp_path / "r", "--set", "fit.class_weight=balanced")


def rss_mb():
    from pathlib import Path
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024


@pytest.mark.skipif(not hasattr(__import__("mmap"), "MADV_DONTNEED"), reason="needs madvise")
def test_memory_mapped_npy_pages_are_released_after_reading(tmp_path):
    from trainer.data.sources import read_npy

    rows = 48 << 20 >> 10  # 48 MB of 1 KB rows
    np.lib.format.open_memmap(tmp_path / "x.npy", "w+", np.float32, (rows, 256))[:] = 1
    a = read_npy(tmp_path / "x.npy")
    before = rss_mb()
    total = sum(float(c[:, 0].sum()) for _, c in a.chunks())
    assert total == rows
    assert rss_mb() - before < 24  # the 48 MB touched did not stay resident
