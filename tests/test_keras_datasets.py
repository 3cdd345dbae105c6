"""Keras's datasets (mnist, fashion_mnist, cifar10/100, imdb, reuters,
boston_housing) from fabricated files of the real formats, served locally."""

import numpy as np
import pytest

import keras_fakes
from fetch_helpers import Files, serve
from trainer.errors import ConfigError, DataError
from trainer.config.families import datasets


@pytest.fixture
def served(tmp_path, monkeypatch):
    """Every fake behind TRAINER_MIRROR, an empty KERAS_HOME; yields the Files."""
    files = Files(keras_fakes.install(monkeypatch))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with serve(files) as base:
        monkeypatch.setenv("TRAINER_MIRROR", base)
        yield files


def load(name, **args):
    return datasets.get({name: args}).load()


def test_mnist_shapes_dtypes_and_cache(served, tmp_path):
    x, y = load("mnist")
    assert x.shape == (256, 28, 28) and x.dtype == np.uint8 and y.shape == (256,)
    x_test, _ = load("mnist", subset="test")
    assert x_test.shape == (64, 28, 28)
    assert (tmp_path / "keras" / "datasets" / "mnist.npz").exists()
    assert [p for p, _ in served.requests] == ["/tensorflow/tf-keras-datasets/mnist.npz"]
    x_all, _ = load("mnist", subset="all")
    assert len(x_all) == 320


def test_fashion_mnist_in_keras_subfolder(served, tmp_path):
    x, y = load("fashion_mnist", subset="test")
    assert x.shape == (16, 28, 28) and y.dtype == np.uint8
    folder = tmp_path / "keras" / "datasets" / "fashion-mnist"
    assert (folder / "t10k-images-idx3-ubyte.gz").exists()


def test_cifar10_batches_layout(served, tmp_path):
    x, y = load("cifar10")
    assert x.shape == (200, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (200, 1) and y.dtype == np.uint8
    assert load("cifar10", subset="test")[0].shape == (40, 32, 32, 3)
    folder = tmp_path / "keras" / "datasets" / "cifar-10-batches-py"
    assert (folder / "test_batch").exists()
    assert (tmp_path / "keras" / "datasets" / "cifar-10-batches-py.tar.gz").exists()


def test_cifar10_pixels_are_channels_last(served):
    """Keras's batches hold channel planes; x[..., c] must be plane c."""
    import io
    import pickle
    import tarfile
    import urllib.parse

    from trainer.datasets.keras_files import KERAS_FILES

    blob = served.files[urllib.parse.urlsplit(KERAS_FILES["cifar10"][0].origin).path]
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        d = pickle.loads(tar.extractfile("cifar-10-batches-py/test_batch").read())
    x, _ = load("cifar10", subset="test")
    np.testing.assert_array_equal(x[0, :, :, 1].ravel(), d[b"data"][0, 1024:2048])


def test_cifar100_label_modes(served):
    _, fine = load("cifar100")
    _, coarse = load("cifar100", label_mode="coarse")
    assert fine.shape == (50, 1)
    np.testing.assert_array_equal(coarse, fine // 5)


def test_cifar100_bad_label_mode_is_config_error(tmp_path):
    from click.testing import CliRunner

    from conftest import write_config
    from trainer.cli import main

    path = write_config(tmp_path, """
data:
  train: {dataset: cifar100, label_mode: medium}
model:
  input_shape: [32, 32, 3]
  layers: [Flatten, {Dense: {units: 100, activation: softmax}}]
compile: {loss: sparse_categorical_crossentropy, optimizer: adam}
""")
    r = CliRunner().invoke(main, ["validate", str(path)])
    assert r.exit_code == 2 and "label_mode" in r.output, r.output


def test_imdb_keras_arguments(served):
    import keras_fakes as kf

    x, y = load("imdb", num_words=20, index_from=3)
    assert x.dtype == np.int32 and x.shape[0] == 30 and y.shape == (30,)
    assert x.max() < 20
    rows = [r[r != 0] for r in x]
    assert all(r[0] == 1 for r in rows)  # start_char
    assert any(2 in r for r in rows)  # words cut by num_words became oov_char
    # Keras's shuffle (RandomState(113)) then index_from: the first review is a
    # shuffled original one, its ids shifted by 3
    import io
    raw = np.load(io.BytesIO(kf.imdb()["imdb.npz"]), allow_pickle=True)
    order = np.arange(30)
    np.random.RandomState(113).shuffle(order)
    x_full, _ = load("imdb")
    first = x_full[0][x_full[0] != 0]
    assert first.tolist() == [1] + [w + 3 for w in raw["x_train"][order[0]]]


def test_imdb_maxlen_drops_long_and_pads(served):
    x, _ = load("imdb", maxlen=8)
    assert x.shape[1] == 8
    assert (x[:, 0] == 0).all() or len(x) == 0
    x, _ = load("imdb", pad_to=5, padding="post")
    assert x.shape[1] == 5


def test_imdb_maxlen_too_small_is_config_error(served):
    with pytest.raises(ConfigError, match="maxlen"):
        load("imdb", maxlen=1)


def test_reuters_split(served):
    x_train, y_train = load("reuters")
    x_test, y_test = load("reuters", subset="test")
    assert len(x_train) == 40 and len(x_test) == 10
    assert x_train.shape[1] == x_test.shape[1]
    assert len(load("reuters", test_split=0.5)[0]) == 25


def test_boston_housing_split(served):
    x, y = load("boston_housing")
    assert x.shape == (404, 13) and y.shape == (404,)
    assert load("boston_housing", subset="test")[0].shape == (102, 13)


def test_keras_cache_is_used_without_network(tmp_path, monkeypatch):
    keras_fakes.place(monkeypatch, tmp_path / "kh", ["mnist", "cifar10"])
    monkeypatch.setenv("TRAINER_MIRROR", "http://127.0.0.1:9")  # nothing there
    assert load("mnist")[0].shape == (256, 28, 28)
    assert load("cifar10")[0].shape == (200, 32, 32, 3)


def test_real_hash_rejects_a_fabricated_file(tmp_path, monkeypatch):
    """Without the swapped hash, Keras's real SHA-256 rejects the fake: exit 3."""
    files = Files({"/tensorflow/tf-keras-datasets/mnist.npz": keras_fakes.mnist()["mnist.npz"]})
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    with serve(files) as base:
        monkeypatch.setenv("TRAINER_MIRROR", base)
        with pytest.raises(DataError, match="731c5ac6"):
            load("mnist")
    assert not (tmp_path / "kh" / "datasets" / "mnist.npz").exists()


def test_planted_pickle_is_refused(tmp_path, monkeypatch):
    import os
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo planted",))

    folder = tmp_path / "kh" / "datasets" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(Evil()))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    with pytest.raises(DataError, match="refusing to load posix.system|refusing to load nt.system"):
        load("cifar10")


@pytest.mark.parametrize("name, args", [("mnist", {}), ("fashion_mnist", {}), ("cifar10", {}),
                                        ("cifar100", {}), ("boston_housing", {}),
                                        ("imdb", {"maxlen": 8}), ("reuters", {"pad_to": 20})])
def test_sample_shapes_are_known_before_the_files_and_match_them(served, name, args):
    """A config is checked against a dataset's shapes before anything is downloaded."""
    ds = datasets.get({name: args})
    known = ds.sample_shapes()
    assert served.requests == []  # nothing fetched to know it
    x, _ = ds.load()
    assert known == x.shape[1:]
