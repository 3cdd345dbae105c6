"""Generated datasets with several inputs and outputs, for functional models."""

from typing import Literal

import numpy as np

from trainer.datasets.base import BuiltinDataset
from trainer.config.families import datasets
from trainer.config.registry import PositiveInt


@datasets.register("two_input_synthetic")
class TwoInputSynthetic(BuiltinDataset):
    """An image-like input and a tabular input, a class and a value to predict.

    - x ``image`` (N, 8, 8) float32: a bright bar, horizontal or vertical at a random
      row/column with a random brightness in [0.5, 1.5], plus Gaussian noise (σ 0.3).
    - x ``meta`` (N, 6) float32: standard normal features.
    - y ``label`` (N,) int64 in 0..3: ``2·vertical + (meta · w > 0)``, so it needs both
      inputs (and a hidden layer: bar direction is not linearly separable in pixels).
    - y ``value`` (N, 1) float32: ``0.5·meta[0] - meta[1] + brightness``.

    Generated from a fixed seed (not the run's), the same for everyone; the last 20 %
    of ``samples`` rows are the test subset.

    Args:
        subset: ``train``, ``test`` or ``all``.
        samples: rows generated in all (default 2500: 2000 train, 500 test).
    """

    def __init__(self, subset: Literal["train", "test", "all"] = "train",
                 samples: PositiveInt = 2500):
        self.subset = subset
        self.samples = samples

    def sample_shapes(self):
        return {"image": (8, 8), "meta": (6,)}

    def arrays(self):
        rng = np.random.default_rng(20261126)
        n = self.samples
        vertical = rng.integers(0, 2, n)
        where = rng.integers(0, 8, n)
        brightness = rng.uniform(0.5, 1.5, n)
        image = rng.normal(0.0, 0.3, (n, 8, 8))
        rows = np.arange(n)
        image[rows[vertical == 0], where[vertical == 0], :] += brightness[vertical == 0, None]
        image[rows[vertical == 1], :, where[vertical == 1]] += brightness[vertical == 1, None]
        meta = rng.normal(size=(n, 6))
        w = np.array([1.0, -0.5, 0.8, 0.0, 0.3, -1.0])
        label = 2 * vertical + (meta @ w > 0)
        value = 0.5 * meta[:, 0] - meta[:, 1] + brightness
        x = {"image": image.astype(np.float32), "meta": meta.astype(np.float32)}
        y = {"label": label.astype(np.int64), "value": value.reshape(-1, 1).astype(np.float32)}
        return x, y

    def load(self):
        x, y = self.arrays()
        if self.subset != "all":
            cut = self.samples - int(round(self.samples * self.test_fraction))
            part = slice(cut, None) if self.subset == "test" else slice(0, cut)
            x = {k: v[part] for k, v in x.items()}
            y = {k: v[part] for k, v in y.items()}
        return x, y
