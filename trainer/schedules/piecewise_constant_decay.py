"""PiecewiseConstantDecay, as tf.keras 2.x."""

from trainer.errors import ConfigError
from trainer.config.families import schedules
from trainer.schedules.base import Schedule


@schedules.register("PiecewiseConstantDecay")
class PiecewiseConstantDecay(Schedule):
    """A constant lr between boundaries::

        lr(step) = values[0]    for step <= boundaries[0]
                   values[i]    for boundaries[i-1] < step <= boundaries[i]
                   values[-1]   for step > boundaries[-1]

    Args:
        boundaries: increasing steps, n of them.
        values: the n + 1 learning rates.
    """

    def __init__(self, boundaries: list[float], values: list[float]):
        self.boundaries = [self.number(b, f"boundaries[{i}]") for i, b in enumerate(boundaries)]
        self.values = [self.number(v, f"values[{i}]", minimum=0.0) for i, v in enumerate(values)]
        if len(self.values) != len(self.boundaries) + 1:
            raise ConfigError(f"PiecewiseConstantDecay: expected one more value than "
                              f"boundaries, got {len(self.boundaries)} boundaries and "
                              f"{len(self.values)} values")
        if any(b >= c for b, c in zip(self.boundaries, self.boundaries[1:])):
            raise ConfigError(f"PiecewiseConstantDecay.boundaries: expected increasing "
                              f"steps, got {self.boundaries}")

    def __call__(self, step):
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]
