"""Keras's word-index datasets (imdb, reuters) and boston_housing, with the arguments
and the shuffling of ``keras.datasets.X.load_data()``.

Keras returns the imdb and reuters sequences as ragged lists; a model needs one array,
so they are padded as Keras's ``pad_sequences`` does (zeros, ``pre`` by default) to
``pad_to`` — by default ``maxlen`` if set, else the longest sequence of train and
test together, so both subsets have one width.
"""

from typing import Literal

import numpy as np

from trainer.datasets.keras_base import KerasDataset
from trainer.datasets.keras_files import fetch
from trainer.errors import ConfigError, DataError
from trainer.fetch.unpickle import load_npz
from trainer.config.families import datasets
from trainer.config.registry import NonNegativeInt, PositiveInt, Rate

Subset = Literal["train", "test", "all"]
Side = Literal["pre", "post"]


def _shuffled(rng, *arrays):
    order = np.arange(len(arrays[0]))
    rng.shuffle(order)
    return [a[order] for a in arrays]


def _words(xs, start_char, index_from):
    if start_char is not None:
        return [[start_char] + [int(w) + index_from for w in x] for x in xs]
    return [[int(w) + index_from for w in x] for x in xs]


def _drop_long(maxlen, xs, labels):
    """Keras's ``remove_long_seq``: keep sequences shorter than ``maxlen``."""
    keep = [i for i, x in enumerate(xs) if len(x) < maxlen]
    return [xs[i] for i in keep], labels[keep]


def _vocabulary(xs, num_words, skip_top, oov_char):
    if not num_words:
        num_words = max(max(x) for x in xs if x)
    if oov_char is not None:
        return [[w if skip_top <= w < num_words else oov_char for w in x] for x in xs]
    return [[w for w in x if skip_top <= w < num_words] for x in xs]


def pad_sequences(xs, length, padding="pre", truncating="pre"):
    """Keras's ``pad_sequences`` with value 0: (len(xs), length) int32."""
    out = np.zeros((len(xs), length), np.int32)
    for i, x in enumerate(xs):
        x = x[-length:] if truncating == "pre" else x[:length]
        if x:
            if padding == "pre":
                out[i, length - len(x):] = x
            else:
                out[i, :len(x)] = x
    return out


class WordIndexDataset(KerasDataset):
    """Common arguments of imdb and reuters (Keras's, plus the padding).

    Args:
        subset: train (default), test, or all.
        num_words: keep the ``num_words`` most frequent words, others become
            ``oov_char`` (default: all).
        skip_top: the most frequent words to turn into ``oov_char`` (default 0).
        maxlen: drop sequences of ``maxlen`` words or more, as Keras (default: none).
        seed: the shuffle's seed (default 113, Keras's).
        start_char: marks each sequence's start (default 1; null: none).
        oov_char: replaces cut words (default 2; null: cut words are dropped).
        index_from: word ids start here (default 3).
        pad_to: width of x (default: maxlen, else the longest sequence).
        padding, truncating: pre (default) or post, as pad_sequences.
    """

    name = ""

    def __init__(self, subset: Subset = "train", num_words: PositiveInt | None = None,
                 skip_top: NonNegativeInt = 0, maxlen: PositiveInt | None = None,
                 seed: int = 113, start_char: NonNegativeInt | None = 1,
                 oov_char: NonNegativeInt | None = 2, index_from: NonNegativeInt = 3,
                 pad_to: PositiveInt | None = None, padding: Side = "pre",
                 truncating: Side = "pre"):
        self.subset, self.num_words = subset, num_words
        self.skip_top, self.maxlen = skip_top, maxlen
        self.seed, self.start_char, self.oov_char = seed, start_char, oov_char
        self.index_from, self.pad_to = index_from, pad_to
        self.padding, self.truncating = padding, truncating

    def sample_shapes(self):
        width = self.pad_to or self.maxlen
        return (width,) if width else None  # else the longest sequence's length

    def ragged(self):
        """Keras's ``load_data`` result: ((x_train, y_train), (x_test, y_test)) with
        x lists of word-id lists."""
        raise NotImplementedError

    def splits(self):
        (x_train, y_train), (x_test, y_test) = self.ragged()
        width = self.pad_to or self.maxlen or max(len(x) for x in x_train + x_test)
        pad = lambda xs: pad_sequences(xs, width, self.padding, self.truncating)  # noqa: E731
        return (pad(x_train), y_train), (pad(x_test), y_test)

    def _arrays(self, *keys):
        (path,) = fetch(self.name)
        f = load_npz(path)
        try:
            return [f[k] for k in keys]
        except KeyError as exc:
            raise DataError(f"{path}: expected the arrays {', '.join(keys)} of Keras's "
                            f"{self.name}.npz, missing {exc}") from None

    def _finish(self, xs, labels, n_train):
        xs = _vocabulary(xs, self.num_words, self.skip_top, self.oov_char)
        return (xs[:n_train], labels[:n_train]), (xs[n_train:], labels[n_train:])


@datasets.register("imdb")
class Imdb(WordIndexDataset):
    """IMDB movie-review sentiment (Keras's ``imdb.npz``): x (N, pad_to) int32 word
    ids, y (N,) int64 0 negative / 1 positive; 25,000 train, 25,000 test, each
    shuffled with ``seed`` as Keras does. A. Maas et al. (2011)."""

    name = "imdb"

    def ragged(self):
        x_train, y_train, x_test, y_test = self._arrays("x_train", "y_train", "x_test", "y_test")
        rng = np.random.RandomState(self.seed)
        x_train, y_train = _shuffled(rng, x_train, y_train)
        x_test, y_test = _shuffled(rng, x_test, y_test)
        x_train = _words(x_train, self.start_char, self.index_from)
        x_test = _words(x_test, self.start_char, self.index_from)
        if self.maxlen:
            x_train, y_train = _drop_long(self.maxlen, x_train, y_train)
            x_test, y_test = _drop_long(self.maxlen, x_test, y_test)
            if not x_train or not x_test:
                raise ConfigError(f"imdb: no sequence is shorter than maxlen={self.maxlen}; "
                                  f"raise maxlen")
        return self._finish(x_train + x_test, np.concatenate([y_train, y_test]), len(x_train))


@datasets.register("reuters")
class Reuters(WordIndexDataset):
    """Reuters newswire topics (Keras's ``reuters.npz``): x (N, pad_to) int32 word ids,
    y (N,) int64 in 0..45; 11,228 wires shuffled with ``seed``, the last
    ``test_split`` (default 0.2) of them the test set, as Keras splits them."""

    name = "reuters"

    def __init__(self, subset: Subset = "train", num_words: PositiveInt | None = None,
                 skip_top: NonNegativeInt = 0, maxlen: PositiveInt | None = None,
                 test_split: Rate = 0.2, seed: int = 113,
                 start_char: NonNegativeInt | None = 1, oov_char: NonNegativeInt | None = 2,
                 index_from: NonNegativeInt = 3, pad_to: PositiveInt | None = None,
                 padding: Side = "pre", truncating: Side = "pre"):
        super().__init__(subset, num_words, skip_top, maxlen, seed, start_char, oov_char,
                         index_from, pad_to, padding, truncating)
        self.test_split = test_split

    def ragged(self):
        xs, labels = self._arrays("x", "y")
        xs, labels = _shuffled(np.random.RandomState(self.seed), xs, labels)
        xs = _words(xs, self.start_char, self.index_from)
        if self.maxlen:
            xs, labels = _drop_long(self.maxlen, xs, labels)
        return self._finish(xs, labels, int(len(xs) * (1 - self.test_split)))


@datasets.register("boston_housing")
class BostonHousing(KerasDataset):
    """Boston housing prices (StatLib, Keras's ``boston_housing.npz``): x (N, 13)
    float64, y (N,) float64 median value in k$; 506 rows shuffled with ``seed``, the
    last ``test_split`` the test set (404 train, 102 test), as Keras splits them.
    Keras warns of an ethical problem in its "B" feature; prefer another dataset
    except to illustrate that.

    Args:
        subset: train (default), test, or all.
        test_split: fraction for the test set (default 0.2).
        seed: the shuffle's seed (default 113).
    """

    SAMPLE_SHAPE = (13,)

    def __init__(self, subset: Subset = "train", test_split: Rate = 0.2, seed: int = 113):
        self.subset, self.test_split, self.seed = subset, test_split, seed

    def splits(self):
        (path,) = fetch("boston_housing")
        f = load_npz(path)
        x, y = _shuffled(np.random.RandomState(self.seed), f["x"], f["y"])
        n = int(len(x) * (1 - self.test_split))
        return (x[:n], y[:n]), (x[n:], y[n:])
