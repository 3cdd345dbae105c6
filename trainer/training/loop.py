"""The epoch loop: batches → train steps → logs → callbacks; and evaluation."""

import signal

import numpy as np

from trainer.callbacks.base import CallbackList
from trainer.data.pipeline import batches
from trainer.errors import DataError, DivergedError, Terminated


class EpochMeans:
    """Loss values averaged exactly over the epoch, weighted by batch size (Keras 2)."""

    def __init__(self, names):
        self.names = names
        self.reset()

    def reset(self):
        self.sums = {n: 0.0 for n in self.names}
        self.count = 0

    def add(self, values, n):
        for name, v in zip(self.names, values):
            self.sums[name] += v * n
        self.count += n

    def results(self):
        return {n: s / self.count if self.count else 0.0 for n, s in self.sums.items()}

    def get_state(self):
        return {"sums": dict(self.sums), "count": self.count}

    def set_state(self, state):
        self.sums = {n: float(state["sums"][n]) for n in self.names}
        self.count = state["count"]


def loss_names(model):
    names = ["loss"]
    if model.multi_output:
        names += [f"{o.name}_loss" for o in model.outputs]
    return names


def sample_weights(model, split, rows, class_weight, ys=None, sw=None):
    """Sample weights of a batch: the data's sample_weight times the class weight of
    each row's label (first output), or None when neither is set. ``ys``/``sw``: the
    batch as ``split.take(rows)`` gave it (lazy splits are not indexed twice)."""
    if ys is None:
        _, ys, sw = split.take(rows)
    if class_weight:
        y = ys[0]
        if y.ndim > 2:
            raise DataError(f"fit.class_weight needs labels of shape (N,), (N, 1) or "
                            f"(N, classes), got {y.shape[1:]} per sample; use a "
                            f"sample_weight array in the data section instead")
        ids = np.argmax(y, axis=-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(-1)
        cw = np.array([class_weight.get(int(i), 1.0) for i in ids.astype(np.int64)])
        sw = cw if sw is None else sw * (cw[:, None] if sw.ndim == 2 else cw)
    return sw


def evaluate(model, split, batch_size, class_weight=None, world=None):
    """Loss and metrics over a whole split, exact (weighted by batch size). ``world``
    (MPI, more than one rank): each rank evaluates its rows of every batch, the sums
    are combined (trainer.training.data_parallel)."""
    model.reset_metrics()
    means = EpochMeans(loss_names(model))
    if world is not None:
        from trainer.training import data_parallel

        data_parallel.evaluate(model, world, split, batch_size, class_weight, means,
                               batches(len(split), batch_size, False, 0, 0), sample_weights)
        return {**means.results(), **model.metric_results()}
    for rows in batches(len(split), batch_size, False, 0, 0):
        xs, ys, sw = split.take(rows)
        total, per_output = model.test_on_batch(xs, ys, sample_weights(model, split, rows,
                                                                        class_weight, ys, sw))
        means.add([total] + (per_output if model.multi_output else []), len(rows))
    return {**means.results(), **model.metric_results()}


def predict(model, split, batch_size):
    outs = None
    for rows in batches(len(split), batch_size, False, 0, 0):
        xs, _, _ = split.take(rows)
        preds = model.predict_on_batch(xs)
        outs = [[p] for p in preds] if outs is None else [o + [p] for o, p in zip(outs, preds)]
    return [np.concatenate(o) for o in outs] if outs else []


class Loop:
    """Runs ``fit`` and holds what a resumed run needs to continue exactly.

    The run's position is (``epoch``, ``step``): ``step`` batches of ``epoch`` are
    done. A run stops cleanly only at a step boundary — between two optimizer steps,
    after the last step of an epoch, or after an epoch's end — never in the middle of
    a step: a signal handler sets ``pending_signal`` and the loop raises
    KeyboardInterrupt (SIGINT) or Terminated (SIGTERM) at the next boundary.
    ``at_boundary`` says whether ``get_state`` describes a consistent point; the
    callbacks' hooks belong to their step, so it is False while any of them runs
    (``hooks``).

    Resuming: ``begin(state, arrays)`` first restores (``set_state``) the position,
    the epoch's loss sums and metric accumulators, every random stream and each
    callback's ``get_state()``, then calls the callbacks' on_train_begin — so they
    know where the run resumes (``params["initial_epoch"]``, ``params["resumed"]``)
    and their restored state before they open their files (a CSVLogger cuts its file
    back to what it held at the checkpoint); then ``run_epochs()``. A resumed epoch
    calls on_epoch_begin again (as Keras's BackupAndRestore) and continues at the
    next step. The batch order is a pure function of the seed and the epoch
    (``batches``), so it needs no state.

    ``save`` is called after every epoch's end (after every callback's
    on_epoch_end, so their state is final) and, with ``checkpoint_every``, every that
    many optimizer steps inside epochs.

    ``accumulate_steps`` k (gradient accumulation): a step takes the k·batch_size
    rows one process with that batch size would take and runs them as micro-batches
    of batch_size (``data_parallel.optimizer_step``); ``step``, ``steps_per_epoch``,
    callbacks' batches and checkpoints count optimizer steps. ``allreduce_dtype``:
    the MPI gradient buffer's.
    """

    def __init__(self, model, train, validation, callbacks, *, epochs, batch_size, shuffle,
                 seed, class_weight=None, initial_epoch=0, validation_batch_size=None,
                 validation_freq=1, steps_per_epoch=None, run=None, checkpoint_every=None,
                 save=None, world=None, accumulate_steps=1, allreduce_dtype="float64"):
        self.model = model
        self.train = train
        self.validation = validation
        self.callbacks = CallbackList(callbacks)
        self.epochs = epochs
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.class_weight = class_weight
        self.validation_batch_size = validation_batch_size or batch_size
        self.validation_freq = validation_freq
        self.steps_per_epoch = steps_per_epoch
        self.run = run
        self.checkpoint_every = checkpoint_every
        self.save = save or (lambda: None)
        self.epoch = initial_epoch
        self.step = 0
        self.epoch_lr = None
        self.means = EpochMeans(loss_names(model))
        self.logs = {}
        self.pending_signal = None
        self.at_boundary = True
        self.saved_at = None
        self._train_sums = None  # the epoch's training sums, kept while validation runs
        self.world = world  # MPI ranks sharing each batch (trainer.distributed), or None
        self.agreed_signal = None  # under MPI: the signal all ranks stop for (agree)
        self.honoured = False
        self.accumulate_steps = accumulate_steps
        self.allreduce_dtype = np.dtype(allreduce_dtype)

    def epoch_batches(self, epoch):
        plan = batches(len(self.train), self.batch_size * self.accumulate_steps,
                       self.shuffle, self.seed, epoch, block=self.train.block)
        return plan[:self.steps_per_epoch] if self.steps_per_epoch else plan

    def run_fit(self):
        self.begin()
        return self.run_epochs()

    def begin(self, state=None, arrays=None):
        """Start training, or continue from ``get_state()`` of an earlier run."""
        self.model.stop_training = False
        if state is not None:
            self.set_state(state, arrays)
        steps = len(self.epoch_batches(self.epoch))
        self.callbacks.set_context(self.model, self.run, {
            "epochs": self.epochs, "steps": steps, "batch_size": self.batch_size,
            "accumulate_steps": self.accumulate_steps,
            "samples": len(self.train), "do_validation": self.validation is not None,
            "initial_epoch": self.epoch, "resumed": state is not None,
            "metrics": self.metric_names()})
        self.callbacks.on_train_begin()

    def run_epochs(self):
        while self.epoch < self.epochs and not self.model.stop_training:
            self.run_epoch()
        self.hooks("on_train_end", self.logs)
        return self.logs

    def run_epoch(self):
        model, epoch = self.model, self.epoch
        plan = self.epoch_batches(epoch)
        if self.step == 0:
            model.reset_metrics()
            self.means.reset()
        self.hooks("on_epoch_begin", epoch)
        self.agree()
        if self.step == 0:
            self.epoch_lr = model.optimizer.current_lr()
        while self.step < len(plan) and not model.stop_training:
            self.train_step(plan)
        logs = {**self.means.results(), **model.metric_results()}
        if self.validation is not None and self.validates(epoch):
            self._train_sums = self.accumulators()  # evaluate() resets the metrics
            self.hooks("on_test_begin")
            val = evaluate(model, self.validation, self.validation_batch_size,
                           world=self.world)
            self.hooks("on_test_end", val)
            logs.update({f"val_{k}": v for k, v in val.items()})
        logs["lr"] = self.epoch_lr
        # plain Python numbers: what a checkpoint's JSON gives back after a resume
        logs = {k: v.item() if isinstance(v, np.generic) else v for k, v in logs.items()}
        self.at_boundary = False  # until every callback has seen the epoch's end
        self.epoch, self.step, self._train_sums = epoch + 1, 0, None
        self.logs = logs
        self.hooks("on_epoch_end", epoch, logs)
        self.agree()
        self.at_boundary = True
        self.checkpoint()
        self.honour_signal()

    def hooks(self, name, *args):
        """Call the callbacks' hook ``name``. Until the last one returns, the run is
        not at a boundary: a stop inside (a second signal) keeps the last checkpoint,
        since a hook half done, or the hooks after it not run, are no step's state (a
        ModelCheckpoint that counted its file as written before writing it). The
        resume runs the step and its hooks again, and the callbacks write the same
        files (CSVLogger and TensorBoard cut theirs back to the checkpoint)."""
        was, self.at_boundary = self.at_boundary, False
        getattr(self.callbacks, name)(*args)
        self.at_boundary = was

    def validates(self, epoch):
        """Keras's validation_freq: every N epochs (N, 2N, ...) or the listed epochs
        (1-based)."""
        freq = self.validation_freq
        if isinstance(freq, (list, tuple)):
            return epoch + 1 in freq
        return (epoch + 1) % freq == 0

    def train_step(self, plan):
        model, step = self.model, self.step
        rows = plan[step]
        self.hooks("on_batch_begin", step, {"batch": step, "size": len(rows)})
        if self.world is None and self.accumulate_steps == 1:
            xs, ys, sw = self.take(rows)
            self.at_boundary = False
            total, per_output = model.train_on_batch(xs, ys, sw)
        else:  # split over MPI ranks and/or into micro-batches
            from trainer.training import data_parallel

            self.at_boundary = False
            total, per_output = data_parallel.optimizer_step(
                model, self.world, rows, self.take, self.batch_size,
                random_streams(model).values(), self.allreduce_dtype)
        self.means.add([total] + (per_output if model.multi_output else []), len(rows))
        self.step = step + 1
        logs = {"batch": step, "size": len(rows), **self.means.results(),
                **model.metric_results()}
        self.hooks("on_batch_end", step, logs)
        self.at_boundary = True  # the step and every callback's end of it are done
        self.agree()
        if not np.isfinite(total):  # TerminateOnNaN or not: a diverged run stops
            raise DivergedError(f"the loss became {total} at epoch {self.epoch + 1}, "
                                f"batch {step + 1} (optimizer step "
                                f"{model.optimizer.iterations + 1}); {self.kept()}")
        every = self.checkpoint_every
        if every and model.optimizer.iterations % every == 0 and self.step < len(plan):
            self.checkpoint()  # (the epoch's end saves anyway)
        self.honour_signal()

    def take(self, rows):
        """(xs, ys, sample weights) of some training rows."""
        xs, ys, sw = self.train.take(rows)
        return xs, ys, sample_weights(self.model, self.train, rows, self.class_weight, ys, sw)

    def kept(self):
        """What a run that stops now leaves to resume from, in words."""
        if self.saved_at is None:
            return "no checkpoint was written yet (the run stopped before its first)"
        epoch, step = self.saved_at
        at = f"after epoch {epoch}" if step == 0 else f"at step {step} of epoch {epoch + 1}"
        return f"the last good checkpoint ({at}) is kept"

    def checkpoint(self):
        """Call ``save`` unless this very position was saved already."""
        if self.saved_at != (self.epoch, self.step):
            self.save()
            self.saved_at = (self.epoch, self.step)

    def agree(self):
        """Under MPI, after the callbacks ran (on rank 0 only: they own the run's files):
        every rank takes rank 0's stop_training and learning-rate override, and a
        signal any rank received, so all stop at the same step boundary."""
        if self.world is None:
            return
        opt, root = self.model.optimizer, self.world.is_root
        override = opt.lr_override
        signals = {signal.SIGINT: 0, signal.SIGTERM: 0}
        if self.pending_signal in signals:
            signals[self.pending_signal] = 1
        mine = [float(bool(self.model.stop_training)) if root else 0.0,
                (np.nan if override is None else float(override)) if root else 0.0,
                (1.0 if override is None else 0.0) if root else 0.0,
                float(signals[signal.SIGINT]), float(signals[signal.SIGTERM])]
        stop, lr, no_override, sigint, sigterm = self.world.allreduce_sum(
            [np.array(mine)])[0].tolist()
        self.model.stop_training = stop > 0
        opt.lr_override = None if no_override > 0 else lr
        # what every rank honours at this boundary (a signal arriving from here on is
        # this rank's own until the next agreement)
        self.agreed_signal = (signal.SIGTERM if sigterm > 0 else
                              signal.SIGINT if sigint > 0 else None)

    def honour_signal(self):
        pending = self.pending_signal if self.world is None else self.agreed_signal
        self.honoured = pending is not None  # raised here, at a boundary all ranks share
        if pending == signal.SIGTERM:
            raise Terminated()
        if pending is not None:
            raise KeyboardInterrupt()

    # -- resuming -----------------------------------------------------------
    def accumulators(self):
        """The epoch's running sums: (JSON-able loss sums, metric arrays)."""
        arrays = {}
        for i, o in enumerate(self.model.outputs):
            for j, m in enumerate(o.metrics):
                for k, v in m.get_state().items():
                    arrays[f"metrics/{i}/{j}/{k}"] = v
        return self.means.get_state(), arrays

    def get_state(self):
        """(JSON-able state, name → array) of the run at the current step boundary."""
        means, arrays = self._train_sums or self.accumulators()
        state = {
            "epoch": self.epoch, "step": self.step, "epoch_lr": self.epoch_lr,
            "stopped": bool(self.model.stop_training), "logs": self.logs, "means": means,
            "rngs": {k: g.bit_generator.state for k, g in random_streams(self.model).items()},
            "callbacks": {key: c.get_state() for key, c in keyed(self.callbacks)},
        }
        return state, arrays

    def set_state(self, state, arrays):
        """Continue from ``get_state()`` of an earlier run (``begin`` calls it)."""
        model = self.model
        self.epoch, self.step = state["epoch"], state["step"]
        self.saved_at = (self.epoch, self.step)
        self.epoch_lr = state["epoch_lr"]
        self.logs = state["logs"]
        model.stop_training = state["stopped"]
        self.means.set_state(state["means"])
        for i, o in enumerate(model.outputs):
            for j, m in enumerate(o.metrics):
                prefix = f"metrics/{i}/{j}/"
                m.set_state({k[len(prefix):]: v for k, v in arrays.items()
                             if k.startswith(prefix)})
        streams = random_streams(model)
        for k, value in state["rngs"].items():
            if k in streams:
                streams[k].bit_generator.state = value
        saved = state["callbacks"]
        for key, c in keyed(self.callbacks):
            if key in saved:
                c.set_state(saved[key])

    def metric_names(self):
        names = self.model.metric_names()
        if self.validation is not None:
            names += [f"val_{n}" for n in names]
        return names


def random_streams(model):
    """Every random generator training draws from: the model's dropout/noise stream,
    and any layer's own ``rng`` (weight initialisation only matters at build)."""
    streams = {"noise": model.noise_rng}
    for layer in model.layers:
        rng = getattr(layer, "rng", None)
        if isinstance(rng, np.random.Generator) and rng is not model.noise_rng:
            streams[f"layer/{layer.name}"] = rng
    return streams


def keyed(callbacks):
    """(key, callback) with keys stable when other callbacks are added or removed:
    the class name, and ``#n`` for the n-th (n ≥ 1) of a class."""
    seen = {}
    for c in callbacks:
        name = type(c).__name__
        n = seen[name] = seen.get(name, -1) + 1
        yield (f"{name}#{n}" if n else name), c
