"""Keras's image datasets, from Keras's cache or Keras's URLs (``trainer.fetch``):
the arrays, shapes, dtypes and splits of ``keras.datasets.X.load_data()``."""

import gzip
from typing import Literal

import numpy as np

from trainer.datasets.keras_base import KerasDataset
from trainer.datasets.keras_files import fetch
from trainer.errors import DataError
from trainer.fetch.unpickle import load_npz, load_pickle
from trainer.config.families import datasets

Subset = Literal["train", "test", "all"]


@datasets.register("mnist")
class Mnist(KerasDataset):
    """MNIST handwritten digits (Keras's ``mnist.npz``): x (N, 28, 28) uint8 in 0..255,
    y (N,) uint8 in 0..9; 60,000 train, 10,000 test. Licence CC BY-SA 3.0 (Y. LeCun,
    C. Cortes); see trainer/datasets/files/README.md.

    Args:
        subset: train (default), test, or all (train then test).
    """

    SAMPLE_SHAPE = (28, 28)

    def __init__(self, subset: Subset = "train"):
        self.subset = subset

    def splits(self):
        (path,) = fetch("mnist")
        f = load_npz(path)
        return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])


def _idx(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


@datasets.register("fashion_mnist")
class FashionMnist(KerasDataset):
    """Fashion-MNIST (Zalando; four IDX ``.gz`` files in Keras's
    ``datasets/fashion-mnist/``): x (N, 28, 28) uint8, y (N,) uint8 in 0..9 (T-shirt,
    trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, ankle boot);
    60,000 train, 10,000 test. Licence MIT (Zalando SE).

    Args:
        subset: train (default), test, or all.
    """

    SAMPLE_SHAPE = (28, 28)

    def __init__(self, subset: Subset = "train"):
        self.subset = subset

    def splits(self):
        paths = fetch("fashion_mnist")
        try:
            y_train, y_test = _idx(paths[0], 8), _idx(paths[2], 8)
            x_train = _idx(paths[1], 16).reshape(len(y_train), 28, 28)
            x_test = _idx(paths[3], 16).reshape(len(y_test), 28, 28)
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{paths[0].parent}: the Fashion-MNIST files are not the IDX "
                            f"files Keras reads ({exc}); delete them to download again") from None
        return (x_train, y_train), (x_test, y_test)


def _batch(path, label_key):
    """One CIFAR python batch → (x (n, 32, 32, 3) uint8, y (n,) uint8)."""
    d = load_pickle(path)
    try:
        data, labels = d[b"data"], d[label_key.encode()]
        x = np.asarray(data, np.uint8).reshape(len(data), 3, 32, 32).transpose(0, 2, 3, 1)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: not a CIFAR batch as Keras reads it (a dict with "
                        f"b'data' (n, 3072) and b'{label_key}'): {exc}") from None
    return x, np.asarray(labels, np.uint8)


def _cifar(parts, label_key):
    xs, ys = zip(*(_batch(p, label_key) for p in parts))
    return np.concatenate(xs), np.concatenate(ys).reshape(-1, 1)


@datasets.register("cifar10")
class Cifar10(KerasDataset):
    """CIFAR-10 (Keras's ``cifar-10-batches-py``): x (N, 32, 32, 3) uint8, y (N, 1)
    uint8 in 0..9 (airplane, automobile, bird, cat, deer, dog, frog, horse, ship,
    truck); 50,000 train (data_batch_1..5), 10,000 test (test_batch). A. Krizhevsky
    (2009); see trainer/datasets/files/README.md.

    Args:
        subset: train (default), test, or all.
    """

    SAMPLE_SHAPE = (32, 32, 3)

    def __init__(self, subset: Subset = "train"):
        self.subset = subset

    def splits(self):
        (folder,) = fetch("cifar10")
        train = _cifar([folder / f"data_batch_{i}" for i in range(1, 6)], "labels")
        return train, _cifar([folder / "test_batch"], "labels")


@datasets.register("cifar100")
class Cifar100(KerasDataset):
    """CIFAR-100 (Keras's ``cifar-100-python``): x (N, 32, 32, 3) uint8, y (N, 1) uint8,
    100 fine classes or 20 coarse superclasses; 50,000 train, 10,000 test.

    Args:
        subset: train (default), test, or all.
        label_mode: fine (default, 0..99) or coarse (0..19), as Keras's.
    """

    SAMPLE_SHAPE = (32, 32, 3)

    def __init__(self, subset: Subset = "train", label_mode: Literal["fine", "coarse"] = "fine"):
        self.subset, self.label_mode = subset, label_mode

    def splits(self):
        (folder,) = fetch("cifar100")
        key = f"{self.label_mode}_labels"
        return _cifar([folder / "train"], key), _cifar([folder / "test"], key)
