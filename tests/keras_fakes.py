"""Small fabricated files in the formats of Keras's datasets (mnist.npz, the
Fashion-MNIST IDX .gz files, CIFAR python batches in a .tar.gz, the ragged
imdb/reuters .npz, boston_housing.npz), and a helper that points trainer at them:
served by a local HTTP server through TRAINER_MIRROR, or placed in a KERAS_HOME,
with KERAS_FILES' hashes swapped for the fabricated files' own."""

import dataclasses
import gzip
import io
import pickle
import struct
import tarfile
import urllib.parse

import numpy as np

from fetch_helpers import sha256
from trainer.datasets import keras_files


def _npz(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _images(rng, n, shape, classes):
    """Images whose mean brightness tells the class, so a model can learn them."""
    y = rng.integers(0, classes, n).astype(np.uint8)
    x = rng.integers(0, 64, (n,) + shape) + (y.reshape((-1,) + (1,) * len(shape)) * 19)
    return x.clip(0, 255).astype(np.uint8), y


def mnist(n_train=256, n_test=64, seed=0):
    rng = np.random.default_rng(seed)
    (x_train, y_train), (x_test, y_test) = (_images(rng, n, (28, 28), 10)
                                            for n in (n_train, n_test))
    return {"mnist.npz": _npz(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)}


def _idx_gz(array):
    header = (struct.pack(">HBB", 0, 8, array.ndim)
              + b"".join(struct.pack(">I", d) for d in array.shape))
    return gzip.compress(header + array.tobytes())


def fashion_mnist(n_train=64, n_test=16, seed=1):
    rng = np.random.default_rng(seed)
    (x_train, y_train), (x_test, y_test) = (_images(rng, n, (28, 28), 10)
                                            for n in (n_train, n_test))
    return {"train-labels-idx1-ubyte.gz": _idx_gz(y_train),
            "train-images-idx3-ubyte.gz": _idx_gz(x_train),
            "t10k-labels-idx1-ubyte.gz": _idx_gz(y_test),
            "t10k-images-idx3-ubyte.gz": _idx_gz(x_test)}


def _tar_gz(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _cifar_batch(x, labels):
    """A CIFAR python batch: x (n, 32, 32, 3) stored as (n, 3072) channel planes."""
    planes = x.transpose(0, 3, 1, 2).reshape(len(x), 3072)
    return pickle.dumps({b"batch_label": b"fake", **labels, b"data": planes}, protocol=2)


def cifar10(per_batch=40, n_test=40, seed=2):
    rng = np.random.default_rng(seed)
    members = {}
    for i in range(1, 6):
        x, y = _images(rng, per_batch, (32, 32, 3), 10)
        members[f"cifar-10-batches-py/data_batch_{i}"] = _cifar_batch(x, {b"labels": y.tolist()})
    x, y = _images(rng, n_test, (32, 32, 3), 10)
    members["cifar-10-batches-py/test_batch"] = _cifar_batch(x, {b"labels": y.tolist()})
    return {"cifar-10-python.tar.gz": _tar_gz(members)}


def cifar100(n_train=50, n_test=20, seed=3):
    rng = np.random.default_rng(seed)
    members = {}
    for part, n in (("train", n_train), ("test", n_test)):
        x, fine = _images(rng, n, (32, 32, 3), 100)
        labels = {b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist()}
        members[f"cifar-100-python/{part}"] = _cifar_batch(x, labels)
    return {"cifar-100-python.tar.gz": _tar_gz(members)}


def _ragged(rows):
    out = np.empty(len(rows), object)
    for i, r in enumerate(rows):
        out[i] = list(r)
    return out


def imdb(n=30, seed=4):
    rng = np.random.default_rng(seed)
    seqs = lambda: _ragged([rng.integers(1, 50, rng.integers(3, 12)).tolist()  # noqa: E731
                            for _ in range(n)])
    return {"imdb.npz": _npz(x_train=seqs(), y_train=rng.integers(0, 2, n),
                             x_test=seqs(), y_test=rng.integers(0, 2, n))}


def reuters(n=50, seed=5):
    rng = np.random.default_rng(seed)
    x = _ragged([rng.integers(1, 80, rng.integers(2, 15)).tolist() for _ in range(n)])
    return {"reuters.npz": _npz(x=x, y=rng.integers(0, 46, n))}


def boston_housing(n=506, seed=6):
    rng = np.random.default_rng(seed)
    return {"boston_housing.npz": _npz(x=rng.normal(size=(n, 13)), y=rng.uniform(5, 50, n))}


FAKES = {"mnist": mnist, "fashion_mnist": fashion_mnist, "cifar10": cifar10,
         "cifar100": cifar100, "imdb": imdb, "reuters": reuters,
         "boston_housing": boston_housing}


def install(monkeypatch, names=None):
    """Fabricate the files of ``names`` (default all), swap their hashes into
    KERAS_FILES, and return {URL path: bytes} for a server behind TRAINER_MIRROR."""
    served = {}
    for name in names or FAKES:
        blobs = FAKES[name]()
        remotes = []
        for remote in keras_files.KERAS_FILES[name]:
            data = blobs[urllib.parse.urlsplit(remote.origin).path.rsplit("/", 1)[1]]
            served[urllib.parse.urlsplit(remote.origin).path] = data
            remotes.append(dataclasses.replace(remote, file_hash=sha256(data)))
        monkeypatch.setitem(keras_files.KERAS_FILES, name, remotes)
    return served


def place(monkeypatch, home, names=None):
    """As ``install``, and put the files in KERAS_HOME=home as Keras caches them."""
    served = install(monkeypatch, names)
    monkeypatch.setenv("KERAS_HOME", str(home))
    for name in names or FAKES:
        for remote in keras_files.KERAS_FILES[name]:
            path = home / remote.cache_subdir / remote.archive_name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(served[urllib.parse.urlsplit(remote.origin).path])
    return served


def place_weights(home, application, **args):
    """A weight file of random values in Keras's release layout, under the name Keras's
    cache gives ``application``'s imagenet weights (for families whose files Keras
    checks no hash of, such as MobileNet); returns its path."""
    from application_helpers import build, write_release_file
    from trainer.config.families import applications

    remote = applications.get({application: {**args, "weights": "imagenet"}}).weight_file()
    assert remote.file_hash is None, "a file Keras checks a hash of needs a patched hash"
    path = home / remote.cache_subdir / remote.fname
    path.parent.mkdir(parents=True, exist_ok=True)
    model, _ = build(home, application=application, weights=None, **args)
    write_release_file(path, model, np.random.default_rng(0))
    return path
