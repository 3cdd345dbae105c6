"""The built-in dataset contract and the shipped small real datasets."""

from importlib import resources

import numpy as np

from trainer.config.families import datasets

SUBSETS = ("train", "test", "all")


class BuiltinDataset:
    """``load() -> (x, y)`` for the chosen ``subset``.

    Real datasets are split once, the same way for everyone: a permutation from a
    fixed seed (not the run's), of which the last ``test_fraction`` is the test set.
    """

    test_fraction = 0.2

    def arrays(self):
        raise NotImplementedError

    def sample_shapes(self):
        """The shape of one sample of x, known before anything is generated or read:
        a tuple, or input name → tuple for a dataset with several inputs. Checked
        against the model's inputs at build time (trainer.data.shapes)."""
        x, _ = self.arrays()
        return {k: v.shape[1:] for k, v in x.items()} if isinstance(x, dict) else x.shape[1:]

    def load(self):
        x, y = self.arrays()
        if self.subset == "all":
            return x, y
        order = np.random.default_rng(12345).permutation(len(x))
        n_test = int(round(len(x) * self.test_fraction))
        rows = order[len(x) - n_test:] if self.subset == "test" else order[:len(x) - n_test]
        rows = np.sort(rows)
        return x[rows], y[rows]


def shipped(name):
    """Arrays of a dataset file shipped in trainer/datasets/files (no pickle)."""
    with resources.files("trainer.datasets").joinpath(f"files/{name}.npz").open("rb") as f:
        with np.load(f, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}


def _shipped_dataset(name, doc):
    from typing import Literal

    class Shipped(BuiltinDataset):
        __doc__ = doc

        def __init__(self, subset: Literal["train", "test", "all"] = "train"):
            self.subset = subset

        def arrays(self):
            data = shipped(name)
            return data["x"], data["y"]

        def sample_shapes(self):  # the shipped files are small: read the arrays
            return shipped(name)["x"].shape[1:]

    Shipped.__name__ = Shipped.__qualname__ = name.title().replace("_", "")
    return datasets.register(name)(Shipped)


_shipped_dataset("digits", """UCI optical recognition of handwritten digits (the 1,797-image
copy distributed with scikit-learn): x (N, 8, 8) uint8 in 0..16, y (N,) classes 0..9.
Licence CC BY 4.0 (E. Alpaydin, C. Kaynak); see trainer/datasets/files/README.md.
Split: 1,438 train, 359 test.""")
_shipped_dataset("iris", """Fisher's iris: x (N, 4) float32, y (N,) classes 0..2. 150 rows,
120 train, 30 test. Licence CC BY 4.0 (UCI).""")
_shipped_dataset("wine", """UCI wine recognition: x (N, 13) float32, y (N,) classes 0..2.
178 rows, 142 train, 36 test. Licence CC BY 4.0 (UCI).""")
_shipped_dataset("breast_cancer", """UCI breast cancer Wisconsin (diagnostic): x (N, 30) float32,
y (N,) 0 malignant / 1 benign. 569 rows, 455 train, 114 test. Licence CC BY 4.0 (UCI).""")
