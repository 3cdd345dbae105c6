"""`trainer fetch dataset NAME` and `trainer fetch weights NAME`, against a local
server (no real network)."""

import dataclasses

from click.testing import CliRunner

import keras_fakes
from fetch_helpers import Files, closed_port_url, serve, sha256
from trainer.applications import weights as weight_table
from trainer.cli import main


def run(*args):
    return CliRunner().invoke(main, ["fetch", *args])


def test_fetch_dataset_into_keras_cache(tmp_path, monkeypatch):
    files = Files(keras_fakes.install(monkeypatch, ["fashion_mnist"]))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with serve(files) as base:
        r = run("dataset", "fashion_mnist", "--mirror", base)
        assert r.exit_code == 0, r.output
        again = run("dataset", "fashion_mnist", "--mirror", closed_port_url())
    folder = tmp_path / "datasets" / "fashion-mnist"
    lines = r.output.splitlines()
    assert [ln for ln in lines if not ln.startswith("downloading ")] == \
        [str(folder / n) for n in keras_fakes.fashion_mnist()]
    assert sum(ln.startswith("downloading ") for ln in lines) == 4  # a log line per file
    assert again.exit_code == 0 and len(files.requests) == 4  # second run: cache hits


def test_fetch_weights_by_application_name(tmp_path, monkeypatch):
    blob = b"HDF5 stand-in" * 100
    for top in (True, False):
        table = dict(weight_table.WEIGHTS["VGG16"])
        table[top] = dataclasses.replace(table[top], file_hash=sha256(blob))
        monkeypatch.setitem(weight_table.WEIGHTS, "VGG16", table)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    files = Files({"/tensorflow/keras-applications/vgg16/"
                   "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5": blob})
    with serve(files) as base:
        monkeypatch.setenv("TRAINER_MIRROR", base)
        r = run("weights", "VGG16", "--no-top")
    assert r.exit_code == 0, r.output
    path = tmp_path / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert str(path) in r.output.splitlines() and path.read_bytes() == blob


def test_fetch_offline_exit_3_names_keras_url_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    r = run("weights", "ResNet50", "--mirror", closed_port_url())
    assert r.exit_code == 3
    assert ("https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
            "resnet50_weights_tf_dim_ordering_tf_kernels.h5") in r.output
    assert str(tmp_path / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels.h5") in r.output
    assert "Traceback" not in r.output


def test_fetch_unknown_names_exit_2_with_suggestion():
    r = run("dataset", "mnst")
    assert r.exit_code == 2 and "Did you mean 'mnist'" in r.output
    r = run("weights", "ResNet5")
    assert r.exit_code == 2 and "Did you mean 'ResNet50'" in r.output
