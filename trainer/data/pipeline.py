"""From the data section to ready splits: read, split, preprocess, check, batch."""

import numpy as np

from trainer.data.sources import load_source
from trainer.errors import DataError
from trainer.registries import preprocessing


class Split:
    """The arrays of one split, keyed by model input / output name."""

    def __init__(self, x, y, sample_weight=None):
        self.x = x  # name → array
        self.y = y  # name → array (empty for predict)
        self.sample_weight = sample_weight
        lengths = {f"x[{k}]": len(v) for k, v in x.items()}
        lengths.update({f"y[{k}]": len(v) for k, v in y.items()})
        if sample_weight is not None:
            lengths["sample_weight"] = len(sample_weight)
        if len(set(lengths.values())) > 1:
            raise DataError("inputs and labels have different numbers of rows: " +
                            ", ".join(f"{k}: {n}" for k, n in lengths.items()))
        self.n = next(iter(lengths.values()), 0)

    def __len__(self):
        return self.n

    def take(self, rows):
        """(list of x arrays, list of y arrays, sample weights) for these rows."""
        xs = [v[rows] for v in self.x.values()]
        ys = [v[rows] for v in self.y.values()]
        sw = None if self.sample_weight is None else self.sample_weight[rows]
        return xs, ys, sw

    def subset(self, rows):
        return Split({k: v[rows] for k, v in self.x.items()},
                     {k: v[rows] for k, v in self.y.items()},
                     None if self.sample_weight is None else self.sample_weight[rows])


def batches(n, batch_size, shuffle, seed, epoch):
    """Row indices per batch: a pure function of the seed and the epoch."""
    order = np.arange(n)
    if shuffle:
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
        for role, arrays in (("x", split.x), ("y", split.y)):
            for name, steps in self.steps[role].items():
                if name not in arrays:
                    continue
                a = arrays[name]
                for step in steps:
                    step.fit(a)
                    a = step(a)

    def apply(self, split):
        out = {}
        for role, arrays in (("x", split.x), ("y", split.y)):
            done = {}
            for name, a in arrays.items():
                for step in self.steps[role].get(name, []):
                    a = step(a)
                done[name] = a
            out[role] = done
        return Split(out["x"], out["y"], split.sample_weight)

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
    return Split(_keyed(x, input_names, "input"), _keyed(y, output_names, "output"),
                 None if sw is None else np.asarray(sw, np.float64).reshape(-1))


def prepare(cfg, input_names, output_names, need=("train", "validation", "test"),
            preprocessor_state=None):
    """Read and preprocess the splits named in ``need``.

    Returns ``(splits, preprocessor)``; statistics come from the training split, or
    from ``preprocessor_state`` (a saved run) when given.
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
            n_val = int(len(train) * val_spec["split"])
            if n_val < 1 or n_val >= len(train):
                raise DataError(f"data.validation.split {val_spec['split']} of {len(train)} "
                                f"rows leaves an empty split")
            cut = len(train) - n_val  # Keras takes the last rows, before shuffling
            raw["validation"] = train.subset(np.arange(cut, len(train)))
            raw["train"] = train.subset(np.arange(cut))
        else:
            raw["validation"] = read_split(cfg, "validation", input_names, output_names)
    if "test" in need and "test" in data:
        raw["test"] = read_split(cfg, "test", input_names, output_names)
    if preprocessor_state is not None:
        pre.set_state(preprocessor_state)
    else:
        pre.fit(raw["train"])
    splits = {k: pre.apply(v) for k, v in raw.items() if k in need}
    return splits, pre
