"""The epoch loop: batches → train steps → logs → callbacks; and evaluation."""

import numpy as np

from trainer.callbacks.base import CallbackList
from trainer.data.pipeline import batches
from trainer.errors import DataError, DivergedError


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
        sw = cw if sw is None else sw * cw
    return sw


def evaluate(model, split, batch_size, class_weight=None):
    """Loss and metrics over a whole split, exact (weighted by batch size)."""
    model.reset_metrics()
    means = EpochMeans(loss_names(model))
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
    """Runs ``fit``: the state a checkpoint needs (epoch, step) is kept here."""

    def __init__(self, model, train, validation, callbacks, *, epochs, batch_size, shuffle,
                 seed, class_weight=None, initial_epoch=0, validation_batch_size=None,
                 steps_per_epoch=None, run=None):
        self.model = model
        self.train = train
        self.validation = validation
        self.callbacks = CallbackList(callbacks)
        self.epochs = epochs
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.class_weight = class_weight
        self.epoch = initial_epoch
        self.validation_batch_size = validation_batch_size or batch_size
        self.steps_per_epoch = steps_per_epoch
        self.run = run
        self.logs = {}

    def epoch_batches(self, epoch):
        plan = batches(len(self.train), self.batch_size, self.shuffle, self.seed, epoch,
                       block=self.train.block)
        return plan[:self.steps_per_epoch] if self.steps_per_epoch else plan

    def run_fit(self):
        model = self.model
        steps = len(self.epoch_batches(self.epoch))
        self.callbacks.set_context(model, self.run, {
            "epochs": self.epochs, "steps": steps, "batch_size": self.batch_size,
            "samples": len(self.train), "do_validation": self.validation is not None,
            "initial_epoch": self.epoch,
            "metrics": self.metric_names()})
        model.stop_training = False
        self.callbacks.on_train_begin()
        means = EpochMeans(loss_names(model))
        while self.epoch < self.epochs and not model.stop_training:
            epoch = self.epoch
            model.reset_metrics()
            means.reset()
            self.callbacks.on_epoch_begin(epoch)
            lr = model.optimizer.current_lr()
            for step, rows in enumerate(self.epoch_batches(epoch)):
                self.callbacks.on_batch_begin(step, {"batch": step, "size": len(rows)})
                xs, ys, sw = self.train.take(rows)
                sw = sample_weights(model, self.train, rows, self.class_weight, ys, sw)
                total, per_output = model.train_on_batch(xs, ys, sw)
                means.add([total] + (per_output if model.multi_output else []), len(rows))
                logs = {"batch": step, "size": len(rows), **means.results(),
                        **model.metric_results()}
                self.callbacks.on_batch_end(step, logs)
                if not np.isfinite(total):  # TerminateOnNaN or not: a diverged run stops
                    raise DivergedError(f"the loss became {total} at epoch {epoch + 1}, "
                                        f"batch {step + 1} (optimizer step "
                                        f"{model.optimizer.iterations + 1}); the last good "
                                        f"checkpoint is kept")
                if model.stop_training:
                    break
            logs = {**means.results(), **model.metric_results()}
            if self.validation is not None:
                self.callbacks.on_test_begin()
                val = evaluate(model, self.validation, self.validation_batch_size)
                self.callbacks.on_test_end(val)
                logs.update({f"val_{k}": v for k, v in val.items()})
            logs["lr"] = lr
            self.epoch = epoch + 1
            self.logs = logs
            self.callbacks.on_epoch_end(epoch, logs)
        self.callbacks.on_train_end(self.logs)
        return self.logs

    def metric_names(self):
        names = self.model.metric_names()
        if self.validation is not None:
            names += [f"val_{n}" for n in names]
        return names
