"""The optimizer contract, with what every optimizer shares: the learning rate (a
number or a schedule), Keras 2 time decay, gradient clipping, and checkpoint state.

One step (``apply``), as Keras 2 (tf.keras 2.x ``OptimizerV2``) does it:

1. ``lr = current_lr()``: the schedule's value at ``iterations`` (or the number, or a
   callback's override), then time decay ``lr / (1 + decay · iterations)``;
2. ``iterations += 1``;
3. clip the gradients: ``clipvalue`` (each element into [-v, v]), then ``clipnorm``
   (each gradient g with ‖g‖₂ > c becomes g·c/‖g‖₂), then ``global_clipnorm`` (all
   gradients scaled together by c/‖(g₁, g₂, …)‖₂ when their joint norm exceeds c);
4. ``update(i, p, g, lr)`` for every parameter, in place.

Subclasses write one update rule, ``update(i, p, g, lr)``, that changes parameter
``p`` in place from its gradient ``g``, keeping per-parameter state in
``self.slots[i]`` (a name → array mapping created by ``new_slots``) and
optimizer-wide numbers in ``self.scalars`` (both are saved in checkpoints).
Update rules use Python floats for their coefficients so that float32 parameters
and slots are computed in float32, never silently promoted to float64.
"""

import math
import numbers
from typing import Annotated

import numpy as np

from trainer.errors import ConfigError
from trainer.config.registry import Args, NonNegativeFloat, Schema, component

# Type hints of the arguments every optimizer shares (they give the JSON Schema).
NonNegative = NonNegativeFloat
#: ``x-expected``: a wrong lr gets one message saying what it takes, not the schedule
#: registry's "unknown schedule" for a number (trainer.config.loader._message)
LearningRate = Annotated[NonNegative | component("schedule"),
                         Schema(**{"x-expected": "a number > 0 or a schedule"})]
Clip = Annotated[float, Schema(exclusiveMinimum=0)] | None

#: what every Keras 2 optimizer takes after its own arguments (``@arguments(COMMON)``):
#: the learning-rate decay, gradient clipping and ``lr``, the older name of learning_rate
COMMON = Args(decay=(NonNegative, 0.0), clipnorm=(Clip, None), clipvalue=(Clip, None),
              global_clipnorm=(Clip, None), lr=(LearningRate | None, None))


class Optimizer:
    def __init__(self, learning_rate=0.001, lr=None, decay=0.0, clipnorm=None,
                 clipvalue=None, global_clipnorm=None):
        if lr is not None:  # Keras 2: `lr` is the older name and wins over learning_rate
            learning_rate = lr
        self.lr = None  # an alias: the resolved config keeps `learning_rate` only
        self.schedule = schedule_of(learning_rate)
        if self.schedule is not None:
            self.learning_rate = self.schedule
        else:
            self.learning_rate = self.number(learning_rate, "learning_rate", minimum=0.0)
        self.decay = self.number(decay, "decay", minimum=0.0)
        self.clipnorm = self.number(clipnorm, "clipnorm", positive=True)
        self.clipvalue = self.number(clipvalue, "clipvalue", positive=True)
        self.global_clipnorm = self.number(global_clipnorm, "global_clipnorm", positive=True)
        if clipnorm is not None and global_clipnorm is not None:
            raise ConfigError(f"{type(self).__name__}: give clipnorm or global_clipnorm, "
                              f"not both (got clipnorm={clipnorm}, "
                              f"global_clipnorm={global_clipnorm})")
        self.iterations = 0
        self.slots = None
        self.scalars = {}  # optimizer-wide state besides iterations (Nadam's momentum cache)
        self.lr_override = None  # set by LearningRateScheduler / ReduceLROnPlateau

    def number(self, value, name, **bounds):
        """A numeric argument as a float, or a ConfigError naming ``Class.name``."""
        return check_number(value, f"{type(self).__name__}.{name}", **bounds)

    def base_lr(self):
        """The lr before time decay (what Keras 2's ``optimizer.lr`` holds): a
        callback's value if one set ``lr_override``, else the schedule at
        ``iterations``, else the number."""
        if self.lr_override is not None:
            return float(self.lr_override)
        if self.schedule is not None:
            return float(self.schedule(self.iterations))
        return float(self.learning_rate)

    def current_lr(self):
        """The lr in force for the next step: ``base_lr()``, then Keras 2 time decay
        lr / (1 + decay · iterations)."""
        base = self.base_lr()
        if self.decay:
            base = base / (1.0 + self.decay * self.iterations)
        return base

    def new_slots(self, p):
        return {}

    def update(self, i, p, g, lr):
        raise NotImplementedError

    def clip(self, grads):
        """Keras 2 order: clipvalue, then clipnorm, then global_clipnorm."""
        if self.clipvalue is not None:
            grads = [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        if self.clipnorm is not None:
            out = []
            for g in grads:
                norm = l2norm(g)
                out.append(g * (self.clipnorm / norm) if norm > self.clipnorm else g)
            grads = out
        if self.global_clipnorm is not None:
            norm = math.sqrt(sum(l2norm(g) ** 2 for g in grads))
            if norm > self.global_clipnorm:
                grads = [g * (self.global_clipnorm / norm) for g in grads]
        return grads

    def apply(self, params, grads):
        """One step on every parameter (arrays changed in place)."""
        if self.slots is None:
            self.slots = [self.new_slots(p) for p in params]
        if len(self.slots) != len(params):
            raise AssertionError(f"optimizer built for {len(self.slots)} parameters, "
                                 f"given {len(params)}")
        lr = self.current_lr()
        self.iterations += 1
        self.begin_step(lr)
        for i, (p, g) in enumerate(zip(params, self.clip(grads))):
            self.update(i, p, g, lr)

    def begin_step(self, lr):
        """Once per step, after ``iterations`` is incremented, before the updates."""

    # -- checkpoints ------------------------------------------------------
    def get_state(self):
        """Iterations, lr override, scalars and every slot, as name → array."""
        state = {"iterations": np.int64(self.iterations)}
        if self.lr_override is not None:
            state["lr_override"] = np.float64(self.lr_override)
        for name, value in self.scalars.items():
            state[f"scalar/{name}"] = np.float64(value)
        for i, slots in enumerate(self.slots or []):
            for name, value in slots.items():
                state[f"slot/{i}/{name}"] = value
        return state

    def set_state(self, state, params):
        who = type(self).__name__
        self.iterations = int(state["iterations"])
        self.lr_override = float(state["lr_override"]) if "lr_override" in state else None
        for name in self.scalars:
            key = f"scalar/{name}"
            if key not in state:
                raise ConfigError(f"{who} state lacks '{key}' (saved by another optimizer?)")
            self.scalars[name] = float(state[key])
        self.slots = [self.new_slots(p) for p in params]
        for i, slots in enumerate(self.slots):
            for name, slot in slots.items():
                key = f"slot/{i}/{name}"
                if key not in state:
                    raise ConfigError(f"{who} state lacks '{key}' (saved by another "
                                      f"optimizer, or with other settings?)")
                value = np.asarray(state[key])
                if value.shape != slot.shape:
                    raise ConfigError(f"{who} state '{key}': the model needs shape "
                                      f"{slot.shape}, the checkpoint has {value.shape}")
                slot[...] = value


def zero_lr_warning(cfg, optimizer):
    """(keypath, message) when the optimizer's lr is the number 0 (valid, as in Keras,
    but the weights never change: a warning, not an error), else None."""
    if optimizer.schedule is not None or optimizer.learning_rate != 0:
        return None
    keypath = ("compile", "optimizer")
    spec = cfg["compile"].get("optimizer")
    if isinstance(spec, dict) and len(spec) == 1:
        (name, args), = spec.items()
        keypath += (name,)
        if isinstance(args, dict):
            keypath += ("lr" if "lr" in args else "learning_rate",)
    return keypath, "lr is 0: training will not change the weights"


def l2norm(g):
    """‖g‖₂ as a Python float, summed in float64."""
    return math.sqrt(float(np.square(g, dtype=np.float64).sum()))


def schedule_of(learning_rate):
    """A schedule from a name, ``{Name: {args}}`` or instance; None for a number."""
    if isinstance(learning_rate, (str, dict)):
        from trainer.config.families import schedules
        return schedules.get(learning_rate)
    if callable(learning_rate):
        return learning_rate
    return None


def check_number(value, name, minimum=None, maximum=None, positive=False):
    """value as a float after checking it (None passes), else a ConfigError naming it
    (``name`` is what the message calls it: ``SGD.momentum``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if positive and not value > 0:
        raise ConfigError(f"{name}: expected a number > 0, got {value}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}: expected a number >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}: expected a number <= {maximum}, got {value}")
    return value if isinstance(value, int) else float(value)  # NumPy scalars → float
