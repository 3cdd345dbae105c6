"""Seeded synthetic 2-D classification datasets: blobs, moons, spirals.

Each draws ``n_samples`` rows from its own ``seed`` argument (default 0) — not from
the run's seed — so that ``subset: train`` and ``subset: test`` of one config are two
parts of the same draw, and changing the run's seed changes initialisation and
shuffling but not the data. The split is the built-in one: a fixed permutation of
which the last 20% is ``test``, the rest ``train`` (``all`` is every row). Rows are
shuffled, so classes are interleaved. x is (N, 2) float32 (blobs: (N, n_features)),
y (N,) int64 class ids.
"""

from typing import Literal

import numpy as np

from trainer.datasets.base import BuiltinDataset
from trainer.config.families import datasets
from trainer.config.registry import PositiveInt

Subset = Literal["train", "test", "all"]


def _per_class(n, k):
    """Rows per class: n split as evenly as possible over k classes."""
    return [n // k + (1 if c < n % k else 0) for c in range(k)]


def _shuffled(rng, x, y):
    order = rng.permutation(len(x))
    return x[order].astype(np.float32), y[order].astype(np.int64)


@datasets.register("blobs")
class Blobs(BuiltinDataset):
    """Gaussian clusters, one per class, with centres uniform in [−10, 10] per axis and
    standard deviation ``noise`` (scikit-learn's make_blobs)."""

    def __init__(self, n_samples: PositiveInt = 1000, classes: PositiveInt = 3,
                 noise: float = 1.0, n_features: PositiveInt = 2, seed: int = 0,
                 subset: Subset = "train"):
        self.n_samples, self.classes, self.noise = n_samples, classes, noise
        self.n_features, self.seed, self.subset = n_features, seed, subset

    def sample_shapes(self):
        return (self.n_features,)

    def arrays(self):
        rng = np.random.default_rng(self.seed)
        centres = rng.uniform(-10, 10, (self.classes, self.n_features))
        counts = _per_class(self.n_samples, self.classes)
        y = np.repeat(np.arange(self.classes), counts)
        x = centres[y] + rng.normal(0, self.noise, (len(y), self.n_features))
        return _shuffled(rng, x, y)


@datasets.register("moons")
class Moons(BuiltinDataset):
    """Two interleaving half circles (scikit-learn's make_moons), Gaussian noise of
    standard deviation ``noise``. Always two classes."""

    def __init__(self, n_samples: PositiveInt = 1000, noise: float = 0.1, seed: int = 0,
                 subset: Subset = "train"):
        self.n_samples, self.noise, self.seed, self.subset = n_samples, noise, seed, subset

    def sample_shapes(self):
        return (2,)

    def arrays(self):
        rng = np.random.default_rng(self.seed)
        n_out, n_in = _per_class(self.n_samples, 2)
        t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
        x = np.concatenate([np.stack([np.cos(t_out), np.sin(t_out)], 1),
                            np.stack([1 - np.cos(t_in), 0.5 - np.sin(t_in)], 1)])
        x = x + rng.normal(0, self.noise, x.shape)
        y = np.repeat([0, 1], [n_out, n_in])
        return _shuffled(rng, x, y)


@datasets.register("spirals")
class Spirals(BuiltinDataset):
    """``classes`` arms of a spiral (the CS231n toy set): for class c, radius r from 0 to
    1 and angle 4c + 4r (radians) plus Gaussian noise of standard deviation ``noise``."""

    def __init__(self, n_samples: PositiveInt = 1000, classes: PositiveInt = 3,
                 noise: float = 0.2, seed: int = 0, subset: Subset = "train"):
        self.n_samples, self.classes, self.noise = n_samples, classes, noise
        self.seed, self.subset = seed, subset

    def sample_shapes(self):
        return (2,)

    def arrays(self):
        rng = np.random.default_rng(self.seed)
        xs, ys = [], []
        for c, n in enumerate(_per_class(self.n_samples, self.classes)):
            r = np.linspace(0, 1, n)
            t = 4 * c + 4 * r + rng.normal(0, self.noise, n)
            xs.append(np.stack([r * np.sin(t), r * np.cos(t)], 1))
            ys.append(np.full(n, c))
        return _shuffled(rng, np.concatenate(xs), np.concatenate(ys))
