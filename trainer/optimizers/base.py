"""The optimizer contract, with what every optimizer shares: lr (or a schedule),
Keras 2 time decay, and gradient clipping.

Subclasses write one update rule, ``update(i, p, g, lr)``, that changes parameter
``p`` in place from its gradient ``g``, keeping per-parameter state in
``self.slots[i]`` (a name → array mapping created by ``new_slots``).
"""

import numpy as np

from trainer.errors import ConfigError


class Optimizer:
    def __init__(self, learning_rate=0.001, lr=None, decay=0.0, clipnorm=None,
                 clipvalue=None, global_clipnorm=None):
        self.learning_rate = lr if lr is not None else learning_rate
        self.lr = None  # `lr` is an alias of `learning_rate`; the resolved config keeps one
        self.decay = decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        if isinstance(self.learning_rate, (str, dict)):
            from trainer.registries import schedules
            self.schedule = schedules.get(self.learning_rate)
        else:
            self.schedule = None
            if not self.learning_rate > 0:
                raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        self.iterations = 0
        self.slots = None
        self.lr_override = None  # set by LearningRateScheduler / ReduceLROnPlateau

    def current_lr(self):
        """The lr in force for the next step: base (or schedule, or a callback's
        value), then Keras 2 decay lr / (1 + decay · iterations)."""
        if self.lr_override is not None:
            base = self.lr_override
        elif self.schedule is not None:
            base = float(self.schedule(self.iterations))
        else:
            base = float(self.learning_rate)
        if self.decay:
            base = base / (1.0 + self.decay * self.iterations)
        return base

    def new_slots(self, p):
        return {}

    def update(self, i, p, g, lr):
        raise NotImplementedError

    def clip(self, grads):
        if self.global_clipnorm is not None:
            norm = np.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads))
            if norm > self.global_clipnorm:
                grads = [g * (self.global_clipnorm / norm) for g in grads]
        if self.clipnorm is not None:
            out = []
            for g in grads:
                norm = float(np.sqrt((g.astype(np.float64) ** 2).sum()))
                out.append(g * (self.clipnorm / norm) if norm > self.clipnorm else g)
            grads = out
        if self.clipvalue is not None:
            grads = [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads

    def apply(self, params, grads):
        """One step on every parameter (arrays changed in place)."""
        if self.slots is None:
            self.slots = [self.new_slots(p) for p in params]
        lr = self.current_lr()
        self.iterations += 1
        for i, (p, g) in enumerate(zip(params, self.clip(grads))):
            self.update(i, p, g, lr)

    # -- checkpoints ------------------------------------------------------
    def get_state(self):
        """Iterations, lr override and every slot, as name → array."""
        state = {"iterations": np.int64(self.iterations)}
        if self.lr_override is not None:
            state["lr_override"] = np.float64(self.lr_override)
        for i, slots in enumerate(self.slots or []):
            for name, value in slots.items():
                state[f"slot/{i}/{name}"] = value
        return state

    def set_state(self, state, params):
        self.iterations = int(state["iterations"])
        self.lr_override = float(state["lr_override"]) if "lr_override" in state else None
        self.slots = [self.new_slots(p) for p in params]
        for i, slots in enumerate(self.slots):
            for name in slots:
                key = f"slot/{i}/{name}"
                if key not in state:
                    raise ConfigError(f"optimizer state lacks '{key}'")
                slots[name][...] = state[key]
