"""A generated sequence-to-sequence dataset for encoder-decoder models (no network)."""

from typing import Annotated, Literal

import numpy as np

from trainer.datasets.base import BuiltinDataset
from trainer.config.families import datasets
from trainer.config.registry import PositiveInt, Schema


@datasets.register("seq2seq_tokens")
class Seq2SeqTokens(BuiltinDataset):
    """Reverse (or copy) a short random token sequence, one-hot, with teacher forcing.

    - x ``enc_in`` (N, length, vocab_size) float32: the source tokens, one-hot.
    - x ``dec_in`` (N, length, vocab_size + 1) float32: the target shifted right by one
      step, starting with a start token (the extra last feature), as a decoder reads it
      while training (teacher forcing).
    - y ``out`` (N, length) int64: the target token ids — the source reversed
      (``task: reverse``) or as it is (``task: copy``); a per-step softmax over
      ``vocab_size`` fits them with ``sparse_categorical_crossentropy``.

    The Keras seq2seq pattern: an LSTM encoder with ``return_state`` hands its final
    ``h, c`` to the decoder as initial states. Generated from ``seed`` (not the run's);
    the last 20 % of ``samples`` rows are the test subset.

    Args:
        subset: ``train``, ``test`` or ``all``. task: ``reverse`` (default) or ``copy``.
        samples: rows generated in all (default 2000). length: tokens per sequence
            (default 5). vocab_size: distinct tokens (default 6). seed: the generator's.
    """

    def __init__(self, subset: Literal["train", "test", "all"] = "train",
                 task: Literal["reverse", "copy"] = "reverse",
                 samples: PositiveInt = 2000,
                 length: Annotated[int, Schema(minimum=2)] = 5,
                 vocab_size: Annotated[int, Schema(minimum=2)] = 6, seed: int = 0):
        self.subset, self.task, self.samples = subset, task, samples
        self.length, self.vocab_size, self.seed = length, vocab_size, seed

    def sample_shapes(self):
        return {"enc_in": (self.length, self.vocab_size),
                "dec_in": (self.length, self.vocab_size + 1)}

    def arrays(self):
        rng = np.random.default_rng(self.seed)
        n, t, v = self.samples, self.length, self.vocab_size
        source = rng.integers(0, v, (n, t))
        target = source[:, ::-1] if self.task == "reverse" else source
        eye = np.eye(v + 1, dtype=np.float32)
        shifted = np.concatenate([np.full((n, 1), v), target[:, :-1]], axis=1)  # v: start
        x = {"enc_in": eye[source][..., :v], "dec_in": eye[shifted]}
        return x, {"out": target.astype(np.int64)}

    def load(self):
        x, y = self.arrays()
        if self.subset != "all":
            cut = self.samples - int(round(self.samples * self.test_fraction))
            part = slice(cut, None) if self.subset == "test" else slice(0, cut)
            x = {k: a[part] for k, a in x.items()}
            y = {k: a[part] for k, a in y.items()}
        return x, y
