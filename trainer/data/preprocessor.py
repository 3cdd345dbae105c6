"""The preprocess section: ordered steps per input and output, fitted on train."""

import numpy as np

from trainer.config.families import preprocessing
from trainer.data import ranks
from trainer.data.lazy import chunked, is_lazy
from trainer.data.split import Split
from trainer.distributed.startup import gathered
from trainer.errors import DataError


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

    def fit(self, split, where="data.train", world=None):
        """Fit each step on the training split as the steps before it leave it: one
        streaming pass over the rows per step that learns statistics. The first pass
        over an array also checks it for NaN/Inf (a statistic of NaN would spoil every
        row, and the row to blame would be lost). Under MPI (``world``) each rank
        streams its share of a lazy array and the steps' partial results are combined
        (``trainer.data.ranks``); a step that cannot combine them (a user's) is fitted
        by rank 0 over every row and its state sent to the others."""
        for role, arrays in (("x", split.x), ("y", split.y)):
            for name, steps in self.steps[role].items():
                if name not in arrays:
                    continue
                array, check = arrays[name], (role, name, split.rows, where)
                for i, step in enumerate(steps):
                    if not step.learns:
                        continue
                    _fit_step(step, steps[:i], array, check, world)
                    check = None  # one pass checks the raw rows

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


def _fit_step(step, before, array, check, world):
    def stream(lo=0, hi=None):
        for start, part in chunked(array, lo=lo, hi=hi):
            if check is not None:
                _check_finite(part, start, array, *check)
            for earlier in before:
                part = earlier(part)
            step.partial_fit(part)

    step.begin_fit()
    if not ranks.spread(array, world):
        stream()
    elif step.mergeable:
        def my_share():
            stream(*ranks.share(array, world))
            return step.partial()

        step.merge(gathered(world, my_share))
    else:
        def on_rank_0():
            if world.is_root:
                stream()
                step.end_fit()
                return step.get_state()
            return None

        step.set_state(gathered(world, on_rank_0)[0])
        return
    step.end_fit()


def _check_finite(part, start, array, role, name, rows, where):
    """DataError naming the first row (of the source) of ``part`` holding NaN/Inf."""
    a = np.asarray(part)
    if a.dtype.kind not in "fc" or not a.size:
        return
    bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    if not bad.any():
        return
    row = start + int(np.argmax(bad))
    row = int(rows[row]) if rows is not None else row
    at = f"row {row} of {array.label}" if is_lazy(array) else f"row {row}"
    what = (f"input '{name}' holds NaN/Inf values" if role == "x"
            else f"the labels for output '{name}' hold NaN or Inf")
    raise DataError(f"{where}: {what} (first in {at})")
