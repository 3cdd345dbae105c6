"""Label steps: class ids → one-hot (to_categorical), and any labels (text too) → class
ids or one-hot by a mapping learnt from the training split (class_ids, one_hot).

The mapping (the sorted distinct labels, or ``classes`` as given) is stored with the
run: in the checkpoint's preprocessing state, which evaluate and predict reuse.
"""

import numpy as np

from trainer.data.preprocessing.steps import Step
from trainer.errors import DataError
from trainer.memory import human_size, memory_bytes
from trainer.config.families import preprocessing
from trainer.config.registry import PositiveInt


def _flat_labels(array, step):
    a = np.asarray(array)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise DataError(f"{step} expects labels of shape (N,) or (N, 1), got shape {a.shape}")
    return a


def _one_hot(ids, n):
    need = len(ids) * n * 4
    if need > memory_bytes() // 4:
        raise DataError(f"one-hot labels of {len(ids)} rows × {n} classes would take "
                        f"{human_size(need)}, more than this machine's memory allows; "
                        f"check num_classes or the label values")
    out = np.zeros((len(ids), n), np.float32)
    out[np.arange(len(ids)), ids] = 1
    return out


@preprocessing.register("to_categorical")
class ToCategorical(Step):
    """Class ids (N,) or (N, 1) → one-hot (N, num_classes), float32.

    ``num_classes`` defaults to max(id) + 1 of the training split.
    """

    mergeable = True

    def __init__(self, num_classes: PositiveInt | None = None):
        self.num_classes = num_classes
        self.learns = num_classes is None
        self._max = -1

    def sample_shape(self, shape):
        return None  # the classes may come from the data

    def begin_fit(self):
        self._max = -1

    def partial_fit(self, array):
        a = np.asarray(array)
        if a.dtype.kind in "USO":
            raise DataError("to_categorical expects class ids, got text labels "
                            f"(e.g. {a.reshape(-1)[:1]}); use one_hot for text labels")
        if a.size:
            self._max = max(self._max, int(np.max(a)))

    def partial(self):
        return self._max

    def merge(self, partials):
        self._max = max(partials, default=-1)

    def end_fit(self):
        if not self.learns:  # num_classes given
            return
        self.num_classes = self._max + 1 if self._max >= 0 else 1

    def __call__(self, array):
        a = _flat_labels(array, "to_categorical")
        if a.dtype.kind in "USO":
            raise DataError("to_categorical expects class ids, got text labels "
                            f"(e.g. {a[:1]}); use one_hot for text labels")
        if a.dtype.kind == "f" and not np.all(np.equal(np.mod(a, 1), 0)):
            raise DataError("to_categorical expects whole-number class ids, got fractions")
        ids = a.astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_classes):
            raise DataError(f"to_categorical: class ids must be in [0, {self.num_classes - 1}]"
                            f", got values in [{ids.min()}, {ids.max()}]")
        return _one_hot(ids, self.num_classes)

    def get_state(self):
        return {"num_classes": np.int64(self.num_classes)}

    def set_state(self, state):
        self.num_classes = int(state["num_classes"])


@preprocessing.register("class_ids")
class ClassIds(Step):
    """Labels (text or numbers) → class ids 0..k−1 (int64), for sparse losses.

    The classes are the sorted distinct labels of the training split unless
    ``classes`` lists them (in class-id order). A label not among them is an error.
    """

    def sample_shape(self, shape):
        return None  # labels: ids or one-hot rows, their width from the data

    def __init__(self, classes: list[str] | None = None):
        self.classes = classes
        self.learns = classes is None
        self._seen = set()
        self._table = None if classes is None else np.asarray(classes)

    mergeable = True

    def begin_fit(self):
        self._seen = set()

    def partial_fit(self, array):
        self._seen.update(np.unique(_flat_labels(array, self.name)).tolist())

    def partial(self):
        return sorted(self._seen)

    def merge(self, partials):
        self._seen = {label for seen in partials for label in seen}

    def end_fit(self):
        if not self.learns:  # classes given
            return
        self._table = np.asarray(sorted(self._seen))
        self.classes = [str(c) for c in self._table]

    @property
    def name(self):
        return "one_hot" if isinstance(self, OneHot) else "class_ids"

    def ids(self, array):
        a = _flat_labels(array, self.name)
        table = self._table
        if a.dtype.kind in "US" or table.dtype.kind in "US":
            a, table = a.astype(str), table.astype(str)
        order = np.argsort(table, kind="stable")
        pos = np.clip(np.searchsorted(table[order], a), 0, len(table) - 1)
        ids = order[pos]
        bad = table[ids] != a
        if np.any(bad):
            unknown = sorted(set(a[bad].tolist()))[:5]
            raise DataError(f"{self.name}: labels {unknown} are not among the classes "
                            f"learnt from the training split: {table.tolist()}")
        return ids.astype(np.int64)

    def __call__(self, array):
        return self.ids(array)

    def get_state(self):
        t = self._table
        return {"classes": np.char.encode(t.astype(str), "utf-8") if t.dtype.kind in "US" else t}

    def set_state(self, state):
        t = np.asarray(state["classes"])
        self._table = np.char.decode(t, "utf-8") if t.dtype.kind == "S" else t
        self.classes = [str(c) for c in self._table]


@preprocessing.register("one_hot")
class OneHot(ClassIds):
    """Labels (text or numbers) → one-hot rows (float32) over the classes of the
    training split (or ``classes`` as given); the mapping is stored with the run."""

    def __call__(self, array):
        return _one_hot(self.ids(array), len(self._table))
