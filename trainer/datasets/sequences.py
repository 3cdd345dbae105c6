"""Generated token-sequence datasets for recurrent and text-CNN models (no network).

Token ids are int32; id 0 is padding (use ``Embedding(mask_zero=True)``), ids 1 and 2
(``marker_order``) or the first ids (``token_topics``) are the meaningful tokens, the
rest noise. Every sample is drawn from ``seed``, so train and test (the same fixed
split as the real datasets) never overlap and are the same on every machine.
"""

from typing import Annotated, Literal

import numpy as np

from trainer.datasets.base import BuiltinDataset
from trainer.errors import ConfigError
from trainer.config.families import datasets
from trainer.config.registry import PositiveInt, Schema

Length = Annotated[int, Schema(minimum=4)]


def _pad(rows, length, padding):
    """Keras ``pad_sequences``: zeros before (``pre``, Keras's default) or after."""
    out = np.zeros((len(rows), length), np.int32)
    for i, row in enumerate(rows):
        if padding == "pre":
            out[i, length - len(row):] = row
        else:
            out[i, :len(row)] = row
    return out


@datasets.register("marker_order")
class MarkerOrder(BuiltinDataset):
    """Two markers in a noisy token sequence; the class depends on their order and on
    their distance, so a model must remember what it saw and when.

    Each sequence has a length in ``[min_length, length]`` (zero-padded to ``length``,
    ``pre`` like Keras's pad_sequences) and holds marker A (id 1) and marker B (id 2)
    once each among noise ids ``3..vocab_size-1``. Classes:
    0: A before B, near; 1: A before B, far; 2: B before A, near; 3: B before A, far —
    "far" when the markers are more than ``length // 4`` steps apart.
    x (n, length) int32, y (n,) int64 in 0..3. Split 80/20 (train/test).

    Args:
        subset: train, test or all. n: samples before the split (default 5000).
        length: padded length (default 24). min_length: shortest sequence (default 12).
        vocab_size: ids 0..vocab_size-1 (default 16). seed: the generator's seed.
        padding: pre (default) or post.
    """

    def __init__(self, subset: Literal["train", "test", "all"] = "train",
                 n: PositiveInt = 5000, length: Length = 24, min_length: Length = 12,
                 vocab_size: Annotated[int, Schema(minimum=4)] = 16, seed: int = 0,
                 padding: Literal["pre", "post"] = "pre"):
        if min_length > length:
            raise ConfigError(f"min_length ({min_length}) is larger than length ({length})")
        self.subset, self.n, self.length, self.min_length = subset, n, length, min_length
        self.vocab_size, self.seed, self.padding = vocab_size, seed, padding

    def sample_shapes(self):
        return (self.length,)

    def arrays(self):
        rng = np.random.default_rng(self.seed)
        lengths = rng.integers(self.min_length, self.length + 1, self.n)
        rows, labels = [], np.empty(self.n, np.int64)
        for i, n in enumerate(lengths):  # generation only; runs once per load
            row = rng.integers(3, self.vocab_size, n)
            a, b = rng.choice(n, 2, replace=False)
            row[a], row[b] = 1, 2
            labels[i] = 2 * int(b < a) + int(abs(int(a) - int(b)) > self.length // 4)
            rows.append(row)
        return _pad(rows, self.length, self.padding), labels


@datasets.register("token_topics")
class TokenTopics(BuiltinDataset):
    """Text-like token sequences whose class is told by an ordered keyword pair.

    Keyword ids are ``1..classes``; class k plants the bigram ``(k+1, (k+1) % classes + 1)``
    ``plants`` times at random places and the reversed pairs of other classes as
    distractors, so single tokens say nothing and only the local order does — the
    pattern a Conv1D with kernel_size >= 2 and a global max pooling find. The rest is
    noise ids ``classes+1..vocab_size-1``. x (n, length) int32, y (n,) int64.

    Args:
        subset: train, test or all. n: samples before the split (default 4000).
        length: sequence length (default 40). classes: number of classes (at least 3,
            default 4: with 2 the reversed pairs would be the class pairs).
        vocab_size: ids 0..vocab_size-1 (default 50). plants: bigrams per sample (2).
        seed: the generator's seed.
    """

    def __init__(self, subset: Literal["train", "test", "all"] = "train",
                 n: PositiveInt = 4000, length: Length = 40,
                 classes: Annotated[int, Schema(minimum=3)] = 4,
                 vocab_size: Annotated[int, Schema(minimum=8)] = 50,
                 plants: PositiveInt = 2, seed: int = 0):
        if vocab_size <= classes + 1:
            raise ConfigError(f"vocab_size ({vocab_size}) must exceed classes + 1 "
                             f"({classes + 1})")
        if 6 * plants > length:
            raise ConfigError(f"length ({length}) is too short for {plants} plants")
        self.subset, self.n, self.length, self.classes = subset, n, length, classes
        self.vocab_size, self.plants, self.seed = vocab_size, plants, seed

    def sample_shapes(self):
        return (self.length,)

    def arrays(self):
        rng = np.random.default_rng(self.seed)
        k = self.classes
        x = rng.integers(k + 1, self.vocab_size, (self.n, self.length)).astype(np.int32)
        y = rng.integers(0, k, self.n)
        first = y + 1
        second = (y + 1) % k + 1
        # 2 * plants slots of three tokens (pair + a noise token, so no pair can form
        # across slots): half hold the class bigram, half distractors
        slots = np.argsort(rng.random((self.n, self.length // 3)), axis=1)[:, :2 * self.plants]
        rows = np.arange(self.n)[:, None]
        other = (y + rng.integers(1, k, self.n)) % k  # a different class's reversed pair
        a = np.where(np.arange(2 * self.plants) < self.plants, first[:, None],
                     ((other + 1) % k + 1)[:, None])
        b = np.where(np.arange(2 * self.plants) < self.plants, second[:, None],
                     (other + 1)[:, None])
        x[rows, 3 * slots] = a
        x[rows, 3 * slots + 1] = b
        return x, y.astype(np.int64)
