"""Nothing outside the run folder: no write through a symlink that leads out of it, no
HDF5 file reading another file's bytes, no data "file" that never ends (issue 22)."""

import os
import resource
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import ROOT, write_config
from data_helpers import IRIS, cli, make_config
from trainer.store import checkpoint
from trainer.callbacks.model_checkpoint import ModelCheckpoint
from trainer.errors import DataError
from trainer.store.runs import Run


def snapshot(folder):
    """name → bytes of every file under ``folder``."""
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def finished_run(tmp_path):
    r = cli("fit", write_config(tmp_path, IRIS), "--run-dir", tmp_path / "r")
    assert r.exit_code == 0, r.output
    return tmp_path / "r"


# -- symlinks leading out of the run folder -------------------------------------------------

@pytest.mark.parametrize("entry", ["checkpoints", "history.csv", "run.json",
                                   "checkpoints/last.h5"])
def test_resume_through_a_symlink_out_of_the_run_folder_is_refused(tmp_path, entry):
    """`checkpoints -> /elsewhere` made --resume write last.h5 (and last.prev.h5) there."""
    run = finished_run(tmp_path)
    outside = tmp_path / "elsewhere"
    (run / entry).rename(outside)
    (run / entry).symlink_to(outside, target_is_directory=outside.is_dir())
    before = snapshot(outside) if outside.is_dir() else outside.read_bytes()
    r = cli("fit", "--resume", run, "--set", "fit.epochs=2")
    assert r.exit_code == 3, r.output
    assert "leads outside the run folder" in r.output and entry in r.output, r.output
    assert (snapshot(outside) if outside.is_dir() else outside.read_bytes()) == before


def test_a_lock_file_linked_out_of_the_run_folder_is_not_truncated(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("the user's notes\n")
    run = finished_run(tmp_path)
    (run / ".lock").unlink(missing_ok=True)
    (run / ".lock").symlink_to(precious)
    r = cli("fit", "--resume", run, "--set", "fit.epochs=2")
    assert r.exit_code == 3 and "leads outside the run folder" in r.output, r.output
    assert precious.read_text() == "the user's notes\n"
    # in a new folder the link is a file trainer did not write: refused, untouched
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / ".lock").symlink_to(precious)
    r = cli("fit", write_config(tmp_path, IRIS), "--run-dir", tmp_path / "new")
    assert r.exit_code == 2 and "did not write" in r.output, r.output
    assert precious.read_text() == "the user's notes\n"


def test_model_checkpoint_into_a_symlinked_folder_writes_nothing_outside(tmp_path):
    """Before: caught only after epoch 1 had been written outside."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    text = IRIS + "callbacks: [{ModelCheckpoint: {filepath: 'sub/w{epoch}.h5'}}]\n"
    r = cli("fit", write_config(tmp_path, text), "--run-dir", tmp_path / "r")
    assert r.exit_code == 0, r.output
    sub = tmp_path / "r" / "checkpoints" / "sub"
    shutil.rmtree(sub)
    sub.symlink_to(outside, target_is_directory=True)
    r = cli("fit", "--resume", tmp_path / "r", "--set", "fit.epochs=2")
    assert r.exit_code == 3 and "leads outside the run folder" in r.output, r.output
    assert list(outside.iterdir()) == []


def test_model_checkpoint_checks_its_folder_before_training(tmp_path):
    """A link made after the run folder was checked is found when training begins."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    run = Run(tmp_path / "r")
    run.checkpoints.mkdir(parents=True)
    (run.checkpoints / "sub").symlink_to(outside, target_is_directory=True)
    callback = ModelCheckpoint(filepath="sub/w{epoch:02d}-{loss:.2f}.h5")
    callback.where = "config.yaml:9:5"
    callback.set_context(None, run, {"metrics": ["loss"]})
    with pytest.raises(DataError, match="leads outside the run folder") as err:
        callback.on_train_begin()
    assert "config.yaml:9:5" in str(err.value)


def test_every_write_into_a_run_folder_is_confined(tmp_path):
    """The one gate (trainer.fileio.confined), used by the atomic writer and appends:
    a final symlink is refused too, and an append never follows one."""
    from trainer.fileio import append_text, atomic_path, confined

    root = tmp_path / "r"
    root.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("keep\n")
    (root / "link.txt").symlink_to(outside)
    (root / "inner.txt").write_text("")
    (root / "inner_link.txt").symlink_to(root / "inner.txt")
    assert confined(root / "a" / "b.h5", root) == root / "a" / "b.h5"
    confined(root / "inner_link.txt", root)  # a link that stays inside is fine
    for path in (root / "link.txt", root / ".." / "x.txt", tmp_path / "x.txt"):
        with pytest.raises(DataError, match="leads outside the run folder"):
            confined(path, root)
    with pytest.raises(DataError):
        with atomic_path(root / "link.txt", root=root):
            pass
    with pytest.raises(DataError):
        append_text(root / "link.txt", "row\n", root=root)
    with pytest.raises(OSError):  # O_NOFOLLOW, even without a root to check against
        append_text(root / "inner_link.txt", "row\n")
    assert outside.read_text() == "keep\n"


# -- HDF5 files that read other files -----------------------------------------------------------

def external_dataset(f, name, shape, dtype, raw):
    """A dataset whose bytes live in ``raw`` (HDF5 external storage)."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    f.create_dataset(name, shape=shape, dtype=dtype, external=[(str(raw), 0, size)])


@pytest.fixture
def raw(tmp_path):
    path = tmp_path / "secret.bin"
    path.write_bytes(np.random.default_rng(0).normal(size=4096).astype(np.float32).tobytes())
    return path


@pytest.mark.parametrize("lazy", [True, False])
def test_hdf5_data_with_external_storage_is_refused(tmp_path, raw, lazy):
    """Before: the model trained on another file's bytes."""
    with h5py.File(tmp_path / "d.h5", "w") as f:
        external_dataset(f, "x", (40, 4), "f4", raw)
        f["y"] = np.arange(40) % 3
    data = {"train": {"path": "d.h5", "x": "x", "y": "y", "lazy": lazy}}
    r = cli("fit", make_config(tmp_path, data), "--run-dir", tmp_path / "r")
    assert r.exit_code == 3, r.output
    assert "d.h5:/x" in r.output and "external storage" in r.output and "secret.bin" in r.output


def test_hdf5_data_with_an_external_link_or_a_virtual_dataset_is_refused(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.ones((40, 4), np.float32)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/x")
        f["y"] = np.arange(40) % 3
    data = {"train": {"path": "d.h5", "x": "x", "y": "y"}}
    r = cli("fit", make_config(tmp_path, data), "--run-dir", tmp_path / "r")
    assert r.exit_code == 3 and "external link" in r.output, r.output
    with h5py.File(tmp_path / "d.h5", "w") as f:
        layout = h5py.VirtualLayout(shape=(40, 4), dtype="f4")
        layout[:] = h5py.VirtualSource(str(tmp_path / "other.h5"), "x", shape=(40, 4))
        f.create_virtual_dataset("x", layout)
        f["y"] = np.arange(40) % 3
    r = cli("fit", make_config(tmp_path, data), "--run-dir", tmp_path / "r2")
    assert r.exit_code == 3 and "virtual dataset" in r.output, r.output


def with_external_kernel(path, raw):
    """The checkpoint ``path`` with its Dense kernel moved to external storage, sealed
    again (a hostile file passes the checksum)."""
    with h5py.File(path, "r+") as f:
        name = "dense/dense/kernel:0"
        shape, dtype = f[name].shape, f[name].dtype
        del f[name]
        external_dataset(f, name, shape, dtype, raw)
    checkpoint._seal(path)
    return path


def test_checkpoints_and_keras_weights_with_external_storage_are_refused(tmp_path, raw):
    run = finished_run(tmp_path)
    hostile = with_external_kernel(run / "checkpoints" / "last.h5", raw)
    with_external_kernel(run / "checkpoints" / "final.h5", raw)  # what evaluate reads
    for args in (["evaluate", run], ["fit", "--resume", run, "--set", "fit.epochs=2"]):
        r = cli(*args)
        assert r.exit_code == 3 and "external storage" in r.output, (args, r.output)
    text = IRIS.replace("model: {input_shape: [4],",
                        f"model: {{input_shape: [4], weights: '{hostile}',")
    r = cli("fit", write_config(tmp_path, text, "weights.yaml"), "--run-dir", tmp_path / "w")
    assert r.exit_code == 3 and "external storage" in r.output, r.output


# -- data files that are not regular files, CSVs bigger than memory allows -------------------

def _limited():
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_csv_that_is_not_a_regular_file_is_refused_before_reading(tmp_path, kind):
    """Before: /dev/zero grew memory without bound; a FIFO blocked forever. Run in a
    process with bounded memory and time, so that a regression cannot hurt the machine."""
    if kind == "fifo":
        os.mkfifo(tmp_path / "d.csv")
    else:
        (tmp_path / "d.csv").symlink_to("/dev/zero")
    path = make_config(tmp_path, {"train": {"path": "d.csv", "y": "label"}})
    r = subprocess.run([sys.executable, "-m", "trainer", "fit", str(path), "--run-dir",
                        str(tmp_path / "r")], capture_output=True, text=True, timeout=120,
                       preexec_fn=_limited, cwd=ROOT)
    assert r.returncode == 3, r.stderr
    assert "not a regular file" in r.stderr and "config.yaml:" in r.stderr, r.stderr


def test_a_csv_bigger_than_its_share_of_memory_is_refused(tmp_path, monkeypatch):
    from trainer.data import sources

    rows = "\n".join(f"{i % 7},{i % 5},{i % 3},{i % 2},{i % 3}" for i in range(400))
    (tmp_path / "d.csv").write_text("a,b,c,d,label\n" + rows + "\n")
    path = make_config(tmp_path, {"train": {"path": "d.csv", "y": "label"}})
    assert cli("fit", path, "--run-dir", tmp_path / "ok").exit_code == 0
    monkeypatch.setattr(sources, "memory_bytes", lambda: 64 * 1024)  # 1 KiB of CSV
    r = cli("fit", path, "--run-dir", tmp_path / "r")
    assert r.exit_code == 3, r.output
    assert "more than a CSV file may hold on this machine (1.0 KiB" in r.output, r.output
