"""What every learning-rate schedule shares: ``__call__(step) -> float``.

``step`` is a count starting at 0: the optimizer's iterations when the schedule is
an optimizer's learning rate, the epoch index when LearningRateScheduler uses it.
Values are computed in float64 Python floats.
"""

from typing import Annotated

from trainer.optimizers.base import check_number
from trainer.config.registry import Schema

Positive = Annotated[float, Schema(exclusiveMinimum=0)]
NonNegative = Annotated[float, Schema(minimum=0)]


class Schedule:
    def __call__(self, step):
        raise NotImplementedError

    def number(self, value, name, **bounds):
        """A numeric argument as a float, or a ConfigError naming ``Class.name``."""
        return check_number(value, f"{type(self).__name__}.{name}", **bounds)
