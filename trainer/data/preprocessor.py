"""The preprocess section: ordered steps per input and output, fitted on train."""

from trainer.data.lazy import chunked
from trainer.data.split import Split
from trainer.config.families import preprocessing


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
