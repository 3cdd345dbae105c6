"""The contract of Keras's downloadable datasets: Keras's own train/test split."""

import numpy as np

from trainer.datasets.base import BuiltinDataset


class KerasDataset(BuiltinDataset):
    """``load()`` returns Keras's ``(x_train, y_train)`` or ``(x_test, y_test)`` (or
    both, concatenated, for ``subset: all``); subclasses implement ``splits()``."""

    #: the shape of one sample of x, known without the files (None: not known before)
    SAMPLE_SHAPE = None

    def splits(self):
        raise NotImplementedError

    def sample_shapes(self):
        """Known without fetching anything (a config is checked before any download);
        None when it depends on the data (unpadded sequences)."""
        return self.SAMPLE_SHAPE

    def load(self):
        (x_train, y_train), (x_test, y_test) = self.splits()
        if self.subset == "train":
            return x_train, y_train
        if self.subset == "test":
            return x_test, y_test
        return np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])
