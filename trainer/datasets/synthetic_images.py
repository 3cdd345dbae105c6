"""A CIFAR-shaped synthetic image dataset, generated from a seed: no download, no files.

``cifar_synthetic``: x (N, 32, 32, 3) uint8 in 0..255, y (N,) int64 classes 0..9, like
CIFAR-10's arrays. Each class is a kind of picture — 0 disk, 1 square, 2 triangle,
3 ring, 4 cross, 5 diamond, 6 horizontal stripes, 7 vertical stripes, 8 diagonal
stripes, 9 checkerboard — drawn at a random place and size, in a colour near the
class's own (a hint, not the answer: colours overlap), on a random background, with
pixel noise. A small CNN learns it well; an MLP much less so.

Split: the training and the test images come from two independent streams of the
same ``seed``, so ``n_train`` changes the training set only; the test set (``n_test``
images) is the same whatever ``n_train`` is. Classes are balanced in order
(image i has class i mod 10), then shuffled within each split.
"""

from typing import Literal

import numpy as np

from trainer.datasets.base import BuiltinDataset
from trainer.config.families import datasets
from trainer.config.registry import NonNegativeInt, PositiveInt

SIZE = 32
PALETTE = np.array([
    [230, 60, 50], [60, 200, 80], [60, 90, 230], [240, 200, 40], [200, 70, 220],
    [40, 210, 220], [250, 140, 40], [150, 150, 150], [120, 60, 30], [250, 250, 250],
], dtype=np.float32)


def _masks(kind, n, rng):
    """(n, 32, 32) float masks in [0, 1] of picture ``kind``, randomly placed."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    cy, cx = (rng.uniform(10, 22, (2, n, 1, 1))).astype(np.float32)
    r = rng.uniform(6, 11, (n, 1, 1)).astype(np.float32)
    dy, dx = yy - cy, xx - cx
    dist = np.sqrt(dx * dx + dy * dy)
    period = rng.uniform(4, 8, (n, 1, 1)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
    wave = lambda t: np.sin(2 * np.pi * t / period + phase) > 0  # noqa: E731
    shapes = {
        0: lambda: dist < r,
        1: lambda: np.maximum(np.abs(dx), np.abs(dy)) < 0.8 * r,
        2: lambda: (np.abs(dy) < 0.8 * r) & (np.abs(dx) < (dy + 0.8 * r) / 2),
        3: lambda: (dist < r) & (dist > 0.55 * r),
        4: lambda: ((np.abs(dx) < r / 4) & (np.abs(dy) < r)) | (
            (np.abs(dy) < r / 4) & (np.abs(dx) < r)),
        5: lambda: np.abs(dx) + np.abs(dy) < r,
        6: lambda: wave(yy + 0 * dx),
        7: lambda: wave(xx + 0 * dy),
        8: lambda: wave((xx + yy) / np.sqrt(2) + 0 * dx),
        9: lambda: wave(xx + 0 * dy) ^ wave(yy + 0 * dx),
    }
    return shapes[kind]().astype(np.float32)


def generate(n, rng):
    """n images and labels from ``rng``."""
    y = np.arange(n) % 10
    rng.shuffle(y)
    x = np.empty((n, SIZE, SIZE, 3), np.float32)
    for kind in range(10):
        rows = np.flatnonzero(y == kind)
        k = len(rows)
        if not k:
            continue
        mask = _masks(kind, k, rng)[..., None]
        fg = (0.6 * PALETTE[kind] + 0.4 * rng.uniform(0, 255, (k, 1, 1, 3))).astype(np.float32)
        bg = (rng.uniform(0, 255, (k, 1, 1, 3)) * 0.7).astype(np.float32)
        x[rows] = bg + mask * (fg - bg)
    noise = rng.standard_normal(x.shape, dtype=np.float32)
    noise *= 18
    x += noise
    np.clip(x, 0, 255, out=x)
    return np.rint(x, out=x).astype(np.uint8), y.astype(np.int64)


@datasets.register("cifar_synthetic")
class CifarSynthetic(BuiltinDataset):
    """CIFAR-shaped synthetic images (see the module doc).

    Args:
        subset: train, test, or all (train then test).
        n_train: number of training images (default 5000).
        n_test: number of test images (default 1000).
        seed: the generator's seed (default 0; not the run's seed, so every run sees
            the same images).
    """

    def __init__(self, subset: Literal["train", "test", "all"] = "train",
                 n_train: PositiveInt = 5000, n_test: PositiveInt = 1000,
                 seed: NonNegativeInt = 0):
        self.subset = subset
        self.n_train = n_train
        self.n_test = n_test
        self.seed = seed

    def sample_shapes(self):
        return (32, 32, 3)

    def load(self):
        train_seq, test_seq = np.random.SeedSequence([self.seed, 32323]).spawn(2)
        parts = []
        if self.subset in ("train", "all"):
            parts.append(generate(self.n_train, np.random.default_rng(train_seq)))
        if self.subset in ("test", "all"):
            parts.append(generate(self.n_test, np.random.default_rng(test_seq)))
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
