"""From the data section to ready splits: read, split, preprocess, check, batch.

In-memory sources are preprocessed once, whole. Lazy sources (HDF5, memory-mapped
.npy; see ``trainer.data.lazy``) stay on disk: ``Split.take`` reads the rows of a batch
and preprocesses them then, statistics having been fitted in one streaming pass.
"""

import math

import numpy as np

from trainer.data.lazy import chunked, is_lazy
from trainer.data.sources import load_source
from trainer.errors import DataError
from trainer.registries import preprocessing

PROBE_ROWS = 256


class Split:
    """The arrays of one split, keyed by model input / output name.

    ``transform`` (a fitted Preprocessor) is applied per batch in ``take`` — set for lazy
    splits. ``check(xs, ys, rows)`` is called on every batch taken when set (lazy splits
    check NaN/Inf and labels per batch, since they are never whole in memory).
    ``rows`` are the row numbers in the source this split came from (validation split).
    """

    def __init__(self, x, y, sample_weight=None, transform=None, rows=None):
        self.x = x  # name → array
        self.y = y  # name → array (empty for predict)
        self.sample_weight = sample_weight
        self.transform = transform
        self.rows = rows
        self.check = None
        lengths = {f"x[{k}]": len(v) for k, v in x.items()}
        lengths.update({f"y[{k}]": len(v) for k, v in y.items()})
        if sample_weight is not None:
            lengths["sample_weight"] = len(sample_weight)
        if len(set(lengths.values())) > 1:
            raise DataError("inputs and labels have different numbers of rows: " +
                            ", ".join(f"{k}: {n}" for k, n in lengths.items()))
        self.n = next(iter(lengths.values()), 0)
        lazy = [a for a in self.arrays() if is_lazy(a)]
        if lazy:  # read every array in the blocks of the one with the widest rows
            rows = max(lazy, key=lambda a: a.row_bytes).block
            for a in lazy:
                a.set_block(rows)

    def __len__(self):
        return self.n

    def arrays(self):
        yield from self.x.values()
        yield from self.y.values()
        if self.sample_weight is not None:
            yield self.sample_weight

    @property
    def lazy(self):
        return any(is_lazy(a) for a in self.arrays())

    @property
    def block(self):
        """Rows per disk block, for chunk-aligned shuffling (None when all in memory)."""
        return next((a.block for a in self.arrays() if is_lazy(a)), None)

    def take(self, rows):
        """(list of x arrays, list of y arrays, sample weights) for these rows."""
        rows = np.asarray(rows, np.int64)
        get = lambda a: a.take(rows) if is_lazy(a) else a[rows]  # noqa: E731
        x = {k: get(v) for k, v in self.x.items()}
        y = {k: get(v) for k, v in self.y.items()}
        if self.transform is not None:
            x = {k: self.transform.apply_one("x", k, v) for k, v in x.items()}
            y = {k: self.transform.apply_one("y", k, v) for k, v in y.items()}
        xs, ys = list(x.values()), list(y.values())
        sw = None if self.sample_weight is None else \
            np.asarray(get(self.sample_weight), np.float64).reshape(-1)
        if self.check is not None:
            self.check(xs, ys, rows)
        return xs, ys, sw

    def subset(self, rows):
        """The split of these rows (in increasing order for lazy splits)."""
        rows = np.asarray(rows, np.int64)
        pick = lambda a: a.view(rows) if is_lazy(a) else a[rows]  # noqa: E731
        return Split({k: pick(v) for k, v in self.x.items()},
                     {k: pick(v) for k, v in self.y.items()},
                     None if self.sample_weight is None else pick(self.sample_weight),
                     self.transform, rows if self.rows is None else self.rows[rows])

    def probe(self):
        """An in-memory, preprocessed split of the first rows of a lazy split (for
        shape and dtype checks before training); the split itself when in memory."""
        if not self.lazy and self.transform is None:
            return self
        xs, ys, sw = self.take(np.arange(min(len(self), PROBE_ROWS)))
        return Split(dict(zip(self.x, xs)), dict(zip(self.y, ys)), sw)

    def labels(self):
        """Class ids (N,) of the first output, preprocessed (for class_weight)."""
        (name, y), = list(self.y.items())[:1]
        if self.transform is None and not is_lazy(y):
            return class_ids(y)
        parts = [class_ids(self.transform.apply_one("y", name, c) if self.transform else c)
                 for _, c in chunked(y)]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def class_ids(y):
    """Labels as class ids (N,): one-hot rows by argmax, ids as they are."""
    y = np.asarray(y)
    return np.argmax(y, axis=-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(-1)


def batches(n, batch_size, shuffle, seed, epoch, block=None):
    """Row indices per batch: a pure function of the seed and the epoch.

    With ``block`` (lazy sources), shuffling permutes the order of blocks of ``block``
    rows and the rows within each block, so reads stay sequential on disk: each block
    is read once per epoch, and every row still comes exactly once.
    """
    order = np.arange(n)
    if shuffle and block and block < n:
        rng = np.random.default_rng([seed, epoch, 0x5EED])
        starts = rng.permutation(-(-n // block)) * block
        order = np.concatenate([s + rng.permutation(min(block, n - s)) for s in starts])
    elif shuffle:
        order = np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def _keyed(value, names, role):
    """An array or a name → array mapping, as a mapping in the model's name order."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        if len(names) != 1:
            raise DataError(f"the model has {len(names)} {role}s ({', '.join(names)}); "
                            f"map the data to them by name, e.g. {role}: {{{names[0]}: ...}}")
        return {names[0]: value}
    missing = [n for n in names if n not in value]
    extra = [k for k in value if k not in names]
    if missing or extra:
        raise DataError(f"data {role}s {sorted(value)} do not match the model's "
                        f"{role}s {names}")
    return {n: value[n] for n in names}


class Preprocessor:
    """The preprocess section: ordered steps per input and output, fitted on train."""

    def __init__(self, section, input_names, output_names):
        self.steps = {"x": self._parse(section.get("x"), input_names),
                      "y": self._parse(section.get("y"), output_names)}

    @staticmethod
    def _parse(spec, names):
        if spec is None:
            return {}
        if isinstance(spec, list):
            return {name: [preprocessing.get(s) for s in spec] for name in names}
        return {name: [preprocessing.get(s) for s in steps] for name, steps in spec.items()}

    def fit(self, split):
        """Fit each step on the training split as the steps before it leave it: one
        streaming pass over the rows per step that learns statistics."""
        for role, arrays in (("x", split.x), ("y", split.y)):
            for name, steps in self.steps[role].items():
                if name not in arrays:
                    continue
                for i, step in enumerate(steps):
                    if not step.learns:
                        continue
                    step.begin_fit()
                    for _, part in chunked(arrays[name]):
                        for before in steps[:i]:
                            part = before(part)
                        step.partial_fit(part)
                    step.end_fit()

    def apply_one(self, role, name, array):
        for step in self.steps[role].get(name, []):
            array = step(array)
        return array

    def apply(self, split):
        """The preprocessed split: whole now when in memory, per batch when lazy."""
        if split.lazy:
            return Split(split.x, split.y, split.sample_weight, self, split.rows)
        out = Split({k: self.apply_one("x", k, v) for k, v in split.x.items()},
                    {k: self.apply_one("y", k, v) for k, v in split.y.items()},
                    split.sample_weight, None, split.rows)
        return out

    def get_state(self):
        state = {}
        for role, per_name in self.steps.items():
            for name, steps in per_name.items():
                for i, step in enumerate(steps):
                    for k, v in step.get_state().items():
                        state[f"{role}/{name}/{i}/{k}"] = v
        return state

    def set_state(self, state):
        for role, per_name in self.steps.items():
            for name, steps in per_name.items():
                for i, step in enumerate(steps):
                    prefix = f"{role}/{name}/{i}/"
                    mine = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
                    if mine:
                        step.set_state(mine)


def read_split(cfg, key, input_names, output_names):
    x, y, sw = load_source(cfg, cfg["data"][key], ("data", key))
    if sw is not None and not is_lazy(sw):
        sw = np.asarray(sw, np.float64).reshape(-1)
    return Split(_keyed(x, input_names, "input"), _keyed(y, output_names, "output"), sw)


def validation_rows(train, fraction, mode, seed):
    """Rows of the training source that ``validation: {split: F, mode: M}`` takes.

    ``tail`` (Keras's validation_split): the last rows, before any shuffling.
    ``random``: a random choice, from the run's seed. ``stratified``: from each class
    of the first output the same fraction (rounded), at random from the run's seed.
    """
    n = len(train)
    n_val = n - int(math.floor(n * (1.0 - fraction)))  # Keras: split_at = floor(n·(1 − f))
    if n_val < 1 or n_val >= n:
        raise DataError(f"data.validation.split {fraction} of {n} rows leaves an empty split")
    if mode == "tail":
        return np.arange(n - n_val, n)
    rng = np.random.default_rng([seed, 0x5A11D])
    if mode == "random":
        return np.sort(rng.permutation(n)[:n_val])
    if not train.y:
        raise DataError("data.validation mode 'stratified' needs labels (data.train.y)")
    y = next(iter(train.y.values()))
    ids = np.concatenate([class_ids(c) for _, c in chunked(y)])
    rows = []
    for c in np.unique(ids):
        members = np.flatnonzero(ids == c)
        k = int(round(len(members) * fraction))
        rows.append(rng.permutation(members)[:k])
    rows = np.sort(np.concatenate(rows))
    if len(rows) < 1 or len(rows) >= n:
        raise DataError(f"data.validation.split {fraction} of {n} rows leaves an empty split")
    return rows


def check_split(split, where):
    """Problems any split can have, before training: no rows, non-numbers."""
    if len(split) == 0:
        raise DataError(f"{where} holds no rows")
    probe = split.probe()
    for role, arrays in (("input", probe.x), ("output", probe.y)):
        for name, a in arrays.items():
            a = np.asarray(a)
            if a.dtype.kind not in "biuf":
                hint = (" — text labels need `class_ids` (for sparse losses) or `one_hot` in "
                        "data.preprocess.y" if role == "output" and a.dtype.kind in "US" else "")
                sample = f" (e.g. {a.reshape(-1)[0].item()!r})" if a.size else ""
                raise DataError(f"{where}: {role} '{name}' holds {a.dtype} values{sample}; "
                                f"numbers are needed{hint}")
            if a.ndim >= 2 and 0 in a.shape[1:]:
                raise DataError(f"{where}: {role} '{name}' has an empty shape {a.shape}")


def prepare(cfg, input_names, output_names, need=("train", "validation", "test"),
            preprocessor_state=None):
    """Read and preprocess the splits named in ``need``.

    Returns ``(splits, preprocessor)``; statistics come from the training split, or
    from ``preprocessor_state`` (a saved run) when given. A validation split taken
    from the training data has ``rows``: which rows it took.
    """
    data = cfg["data"]
    pre = Preprocessor(data.get("preprocess", {}), input_names, output_names)
    raw = {}
    if "train" in need or preprocessor_state is None:
        raw["train"] = read_split(cfg, "train", input_names, output_names)
    val_spec = data.get("validation")
    if "validation" in need and val_spec is not None:
        if "split" in val_spec:
            train = raw["train"]
            rows = validation_rows(train, val_spec["split"], val_spec.get("mode", "tail"),
                                   cfg.get("seed", 0))
            keep = np.ones(len(train), bool)
            keep[rows] = False
            raw["validation"] = train.subset(rows)
            raw["train"] = train.subset(np.flatnonzero(keep))
        else:
            raw["validation"] = read_split(cfg, "validation", input_names, output_names)
    if "test" in need and "test" in data:
        raw["test"] = read_split(cfg, "test", input_names, output_names)
    if preprocessor_state is not None:
        pre.set_state(preprocessor_state)
    else:
        if len(raw["train"]) == 0:
            raise DataError("data.train holds no rows")
        pre.fit(raw["train"])
    splits = {k: pre.apply(v) for k, v in raw.items() if k in need}
    for k, split in splits.items():
        check_split(split, f"data.{k}")
    return splits, pre
