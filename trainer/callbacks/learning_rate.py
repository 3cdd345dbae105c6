"""ReduceLROnPlateau and LearningRateScheduler, as Keras 2.

Both change the lr only through ``optimizer.lr_override`` (see
``trainer.optimizers.base.Optimizer.current_lr``), which last.h5 stores with the
optimizer state; Keras 2's time ``decay`` still applies on top.
"""

from typing import Annotated, Literal, Optional, Union

from trainer.callbacks.base import Callback, Monitor, base_lr, say
from trainer.errors import ConfigError
from trainer.config.families import callbacks
from trainer.config.registry import NonNegativeInt, Schema, component


@callbacks.register("ReduceLROnPlateau")
class ReduceLROnPlateau(Callback):
    """Multiply the lr by ``factor`` when ``monitor`` has stopped improving.

    Args:
        monitor: the logged value to watch (default val_loss).
        factor: new_lr = lr · factor, below 1.
        patience: epochs without improvement before the lr is reduced.
        verbose: 1 prints each reduction.
        mode: auto / min / max (``auto`` maximises names with ``acc``, auc, ...).
        min_delta: a change smaller than this is no improvement (``epsilon`` is
            Keras 2's older name for it).
        cooldown: epochs to wait after a reduction before counting again.
        min_lr: the lr is never reduced below this.
    """

    def __init__(self, monitor: str = "val_loss",
                 factor: Annotated[float, Schema(exclusiveMinimum=0, exclusiveMaximum=1)] = 0.1,
                 patience: NonNegativeInt = 10, verbose: Literal[0, 1] = 0,
                 mode: Literal["auto", "min", "max"] = "auto",
                 min_delta: Annotated[float, Schema(minimum=0)] = 1e-4,
                 cooldown: NonNegativeInt = 0,
                 min_lr: Annotated[float, Schema(minimum=0)] = 0.0,
                 epsilon: Optional[float] = None):
        super().__init__()
        if not 0 < factor < 1:
            raise ConfigError(f"ReduceLROnPlateau.factor must be in (0, 1), got {factor}")
        self.monitor = monitor
        self.factor = factor
        self.patience = patience
        self.verbose = verbose
        self.mode = mode
        self.min_delta = epsilon if epsilon is not None else min_delta
        self.epsilon = None  # an alias; the resolved config keeps min_delta
        self.cooldown = cooldown
        self.min_lr = min_lr
        self.tracker = Monitor("ReduceLROnPlateau", monitor, mode, self.min_delta)
        self.wait = 0
        self.cooldown_counter = 0

    def on_train_begin(self, logs=None):
        self.tracker.check_available(self.params, self.where)

    def on_epoch_end(self, epoch, logs=None):
        current = self.tracker.value(logs)
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.tracker.better(current, self.tracker.best):
            self.tracker.best = current
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = base_lr(self.model.optimizer)
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    self.model.optimizer.lr_override = new
                    if self.verbose:
                        say(f"Epoch {epoch + 1:05d}: ReduceLROnPlateau reducing learning "
                            f"rate to {new}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0

    def get_state(self):
        return {**self.tracker.state(), "wait": self.wait,
                "cooldown_counter": self.cooldown_counter}

    def set_state(self, state):
        self.tracker.set_state(state)
        self.wait = int(state["wait"])
        self.cooldown_counter = int(state["cooldown_counter"])


# {table: {0: 0.1, 10: 0.01}}: from epoch 0 the lr is 0.1, from epoch 10 it is 0.01.
EpochTable = Annotated[dict, Schema(
    required=["table"], additionalProperties=False,
    properties={"table": {"type": "object", "minProperties": 1,
                          "propertyNames": {"pattern": "^[0-9]+$"},
                          "additionalProperties": {"type": "number",
                                                   "exclusiveMinimum": 0}}})]


class EpochTableSchedule:
    """lr by epoch: the value of the largest listed epoch at or before this one; before
    the first listed epoch the optimizer's own lr stays in force (None)."""

    def __init__(self, table):
        try:
            self.points = sorted((int(k), float(v)) for k, v in table.items())
        except (TypeError, ValueError):
            raise ConfigError(f"LearningRateScheduler.schedule.table: epochs must be whole "
                              f"numbers and lrs numbers, got {table!r}") from None
        if not self.points or any(e < 0 or v <= 0 for e, v in self.points):
            raise ConfigError(f"LearningRateScheduler.schedule.table: expected epoch → "
                              f"positive lr pairs, got {table!r}")

    def __call__(self, epoch):
        lr = None
        for start, value in self.points:
            if start <= epoch:
                lr = value
        return lr


@callbacks.register("LearningRateScheduler")
class LearningRateScheduler(Callback):
    """Set the lr at the start of every epoch from a declarative schedule.

    Args:
        schedule: either a named schedule with its arguments, called with the epoch
            index (0-based) instead of the step — e.g.
            ``{ExponentialDecay: {initial_learning_rate: 0.1, decay_steps: 10,
            decay_rate: 0.5}}`` gives 0.1 · 0.5^(epoch/10) — or a table of epoch → lr,
            ``{table: {0: 0.1, 10: 0.01, 20: 0.001}}``: each lr holds from its epoch
            until the next listed one (before the first, the optimizer's lr holds),
            or a schedule of the user's own, ``{schedule: "my_lr:by_epoch"}`` (a
            function ``(epoch) -> lr`` in a module, see trainer.schedules.user).
            Never code in the config: Keras's ``schedule(epoch, lr)`` has no config form.
        verbose: 1 prints the lr set at each epoch.
    """

    def __init__(self, schedule: Union[component("schedule"), EpochTable],
                 verbose: Literal[0, 1] = 0):
        super().__init__()
        self.schedule = schedule
        self.verbose = verbose
        if isinstance(schedule, dict) and set(schedule) == {"table"}:
            self.fn = EpochTableSchedule(schedule["table"])
        else:
            from trainer.config.families import schedules
            self.fn = schedules.get(schedule)

    def on_epoch_begin(self, epoch, logs=None):
        lr = self.fn(epoch)
        if lr is None:
            return
        lr = float(lr)
        if not lr > 0:
            raise ConfigError(f"LearningRateScheduler: the schedule gave lr {lr} at epoch "
                              f"{epoch}; it must be positive", where=self.where)
        self.model.optimizer.lr_override = lr
        if self.verbose:
            say(f"Epoch {epoch + 1:05d}: LearningRateScheduler setting learning rate to {lr}.")
