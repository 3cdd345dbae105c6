"""Model: a built graph plus what compile adds (losses, metrics, optimizer).

It runs one batch at a time; the epoch loop lives in ``trainer/training/loop.py``.
"""

import numpy as np

from trainer.distributed import shard
from trainer.errors import DataError


class Output:
    """One model output with its loss, weight and metrics."""

    def __init__(self, name, units, loss, loss_name, weight, metrics):
        self.name = name
        self.units = units
        self.loss = loss
        self.loss_name = loss_name
        self.weight = weight
        self.metrics = metrics


class Model:
    def __init__(self, graph, dtype=np.float32, name="model"):
        from trainer.engine.kernels.parallel import keep_freed_memory, pin_blas

        keep_freed_memory()  # no page faults on each step's fresh activations
        pin_blas()  # the engine's threads, not BLAS's, split the work
        self.graph = graph
        self.dtype = np.dtype(dtype)
        self.name = name
        self.layers = graph.layers()
        self.input_names = list(graph.input_names)
        self.output_names = getattr(graph, "output_names", None) or [
            graph.producer[i].layer.name for i in graph.outputs]
        self.outputs = []
        self.optimizer = None
        self.stop_training = False
        self.noise_rng = np.random.default_rng(0)
        self._int_inputs = set()

    # -- compile ----------------------------------------------------------
    def compile(self, outputs, optimizer):
        from trainer.losses.crossentropy import fuses_with_softmax

        self.outputs = outputs
        self.optimizer = optimizer
        # outputs whose loss gradient goes straight to their softmax's input
        self._fused = {k for k, o in enumerate(outputs)
                       if fuses_with_softmax(o.loss) and self.graph.fusable_output(k)}

    @property
    def multi_output(self):
        return len(self.outputs) > 1

    def trainable_layers(self):
        return [layer for layer in self.layers if layer.trainable and layer.params]

    def params(self):
        return [p for layer in self.trainable_layers() for p in layer.params.values()]

    def grads(self):
        return [g for layer in self.trainable_layers() for g in layer.grads.values()]

    def metric_names(self):
        """The names logged per epoch, in Keras order."""
        names = ["loss"]
        if self.multi_output:
            names += [f"{o.name}_loss" for o in self.outputs]
        for o in self.outputs:
            names += [self._metric_key(o, m) for m in o.metrics]
        return names

    def _metric_key(self, output, metric):
        return f"{output.name}_{metric.name}" if self.multi_output else metric.name

    # -- one batch --------------------------------------------------------
    def cast_inputs(self, xs):
        return [x if i in self._int_inputs else np.asarray(x, self.dtype)
                for i, x in enumerate(xs)]

    #: inference splits a batch over the engine's threads in slices of at least this
    PREDICT_MIN_ROWS = 64
    #: and runs each thread's slice as blocks whose largest activation stays under this
    PREDICT_BLOCK_BYTES = 4 << 20
    #: but never fewer rows than this: a ResNet50 sample's 112x112x64 activation alone
    #: is 3.2 MB, and blocks of one sample ran its deep layers' GEMMs on 49 rows (slower)
    PREDICT_BLOCK_MIN_ROWS = 8

    def predict_block_rows(self):
        """The rows of one inference block: as many samples as keep the graph's largest
        per-sample tensor made for a whole block (``Graph.inference_shapes``: not those
        a convolution chain makes one sample at a time), in the model's dtype, under
        ``PREDICT_BLOCK_BYTES``, at least
        ``PREDICT_BLOCK_MIN_ROWS``. Fixed by the model's shapes alone, never by the
        thread count, so the numbers are the same on any thread count. A shape with an
        unknown dimension (variable timesteps): None, no blocks."""
        itemsize = self.dtype.itemsize
        largest = 0
        for shape in self.graph.inference_shapes():
            if any(d is None for d in shape):
                return None
            largest = max(largest, int(np.prod(shape, dtype=np.int64)) * itemsize)
        return max(self.PREDICT_BLOCK_MIN_ROWS, 1,
                   self.PREDICT_BLOCK_BYTES // max(1, largest))

    def predict_on_batch(self, xs, for_loss=False):
        """The outputs for one batch. At inference every sample is independent (no
        dropout, moving statistics, no stateful layers), so a big batch runs as slices
        of the whole graph on the engine's threads, one join per batch, not per layer;
        each thread's slice runs as blocks of ``predict_block_rows`` rows, so that a
        block's activations stay in cache from layer to layer and reuse the same freed
        memory (a 64 MB activation is above glibc's mmap threshold: mapped fresh and
        page-faulted in at every call). The blocks are fixed by the shape (``parallel.
        blocks``), not by the thread count. A graph that is one chain cutting its rows
        over the threads itself (``Graph.threads_itself``: an MLP's dense chain, one
        compiled parallel region a batch) takes the batch whole.
        ``for_loss``: (outputs, their masks, activity penalty sum), as
        ``Graph.forward``."""
        from trainer.engine.kernels import parallel

        xs = self.cast_inputs(xs)
        if self.user_layers() or self._user_activity_penalty() or self.graph.threads_itself():
            return self.graph.forward(xs, training=False, for_loss=for_loss)
        n = len(xs[0]) if xs else 0
        rows = self.predict_block_rows()
        if not parallel.splits(n, self.PREDICT_MIN_ROWS) and (rows is None or n <= rows):
            return self.graph.forward(xs, training=False, for_loss=for_loss)
        parts = parallel.run_parts(
            lambda a, b: self.graph.forward([x[a:b] for x in xs], training=False,
                                            for_loss=True),
            parallel.blocks(n, rows or n, self.PREDICT_MIN_ROWS))
        outs = [np.concatenate([p[0][k] for p in parts]) for k in range(len(parts[0][0]))]
        if not for_loss:
            return outs
        masks = [None if parts[0][1][k] is None else np.concatenate([p[1][k] for p in parts])
                 for k in range(len(outs))]
        return outs, masks, sum(p[2] for p in parts)

    def user_layers(self):
        """Layers of the user's own classes (``{layer: "module:Class"}``): not known to
        be safe to run on threads, and without a Keras equivalent to export."""
        return [layer for layer in self.layers
                if not type(layer).__module__.startswith("trainer.")]

    def _user_activity_penalty(self):
        """A user regularizer as some layer's activity_regularizer: it runs in the
        forward pass, and like a user layer is kept out of the engine's threads."""
        return any(hasattr(layer.activity_regularizer, "user_ref") for layer in self.layers)

    def regularization(self):
        total = 0.0
        for layer in self.trainable_layers():
            for name, reg in layer.regularizers.items():
                total += reg.penalty(layer.params[name])
        return total

    def _losses(self, ys, preds, sw, fused=(), masks=None):
        """Per output: (weighted batch loss, gradient of it wrt the prediction — or
        wrt the softmax's input for the outputs in ``fused``). An output with a mask
        takes the masked loss (``_masked_loss``)."""
        from trainer.losses.crossentropy import softmax_input_gradient

        results = []
        for k, (o, y, p) in enumerate(zip(self.outputs, ys, preds)):
            mask = timestep_mask(masks[k] if masks else None, p, sw)
            if mask is not None:
                results.append(self._masked_loss(o, y, p, sw, mask, k in fused))
                continue
            n = shard.batch_size(len(p))  # the global batch's, split over MPI ranks
            values = o.loss(y, p)
            if k in fused:
                grad = softmax_input_gradient(o.loss, y, p)
            else:
                grad = o.loss.gradient(y, p)
            if sw is not None:
                w = sw.astype(p.dtype)
                batch_loss = float((values * w).sum()) / n
                grad = grad * w.reshape((-1,) + (1,) * (grad.ndim - 1))
            else:
                batch_loss = float(values.sum()) / n
            results.append((batch_loss, (o.weight / n) * grad))
        return results

    @staticmethod
    def _masked_loss(o, y, p, sw, mask, fused):
        """Keras's masked loss: an output of shape (N, T, ...) whose mask (N, T) came
        through the layers (Embedding mask_zero, Masking) counts only its unmasked
        timesteps — the mask joins the sample weights and the sum is divided by the
        number of unmasked timesteps, Σ l·w·m / Σ m (all masked: 0)."""
        from trainer.losses.crossentropy import softmax_input_gradient

        yr, pr, w = timestep_rows(y, p, mask, sw)
        valid = shard.total(float(mask.sum()))  # over the global batch
        scale = w / valid if valid else np.zeros_like(w)
        values = o.loss(yr, pr)
        grad = softmax_input_gradient(o.loss, yr, pr) if fused else o.loss.gradient(yr, pr)
        grad = grad * scale.astype(p.dtype).reshape((-1,) + (1,) * (grad.ndim - 1))
        return float((values * scale).sum()), (o.weight * grad).reshape(p.shape)

    def train_on_batch(self, xs, ys, sw=None):
        """One optimizer step. Returns the batch's total loss (with penalties) and
        the per-output losses; updates the metric accumulators."""
        total, per_output, preds, masks = self.compute_gradients(xs, ys, sw)
        if not np.isfinite(total):  # no update from it; the loop reports the divergence
            return total, per_output
        self.optimizer.apply(self.params(), self.grads())
        self._update_metrics(ys, preds, sw, masks)
        return total, per_output

    def compute_gradients(self, xs, ys, sw=None, penalties=True):
        """Forward and backward of one batch: the total loss (losses, weight and
        activity penalties) and its gradient in every layer's ``grads`` (left as they
        were when the loss is not finite). Returns (total, per-output losses,
        predictions, output masks). ``penalties=False``: without the weight
        regularizers' penalties and gradients (a rank's share of a batch split over
        MPI ranks: they are added once, after the sums)."""
        preds, masks, activity = self.graph.forward(self.cast_inputs(xs), training=True,
                                                    for_loss=True)
        fused = getattr(self, "_fused", ())
        per_output = self._losses(ys, preds, sw, fused, masks)
        reg = (self.regularization() if penalties else 0.0) + \
            activity / shard.batch_size(len(preds[0]))
        total = sum(o.weight * l for o, (l, _) in zip(self.outputs, per_output)) + reg
        losses = [l for l, _ in per_output]
        if not np.isfinite(total):
            return total, losses, preds, masks
        self.graph.backward([g.astype(p.dtype, copy=False)
                             for (_, g), p in zip(per_output, preds)], preactivation=fused)
        if penalties:
            self.add_penalty_gradients()
        return total, losses, preds, masks

    def add_penalty_gradients(self):
        """The weight regularizers' gradients, added to every layer's ``grads``."""
        for layer in self.trainable_layers():
            for name, reg_fn in layer.regularizers.items():
                layer.grads[name] += reg_fn.gradient(layer.params[name])

    def test_on_batch(self, xs, ys, sw=None, penalties=True):
        preds, masks, activity = self.predict_on_batch(xs, for_loss=True)
        per_output = self._losses(ys, preds, sw, masks=masks)
        total = sum(o.weight * l for o, (l, _) in zip(self.outputs, per_output))
        total += (self.regularization() if penalties else 0.0) + \
            activity / shard.batch_size(len(preds[0]))
        self._update_metrics(ys, preds, sw, masks)
        return total, [l for l, _ in per_output]

    def _update_metrics(self, ys, preds, sw, masks=None):
        for k, (o, y, p) in enumerate(zip(self.outputs, ys, preds)):
            if len(p) == 0:  # an MPI rank's empty share of a small last batch
                continue
            for m in o.metrics:  # only weighted_metrics see sample/class weights (Keras 2)
                weights = sw if m.weighted else None
                mask = timestep_mask(masks[k] if masks else None, p, weights)
                if mask is None:
                    m.update(y, p, weights)
                else:  # as Keras: the mask weighs every metric, one row per timestep
                    m.update(*timestep_rows(y, p, mask, weights))

    def reset_metrics(self):
        for o in self.outputs:
            for m in o.metrics:
                m.reset()

    def metric_results(self):
        return {self._metric_key(o, m): m.result() for o in self.outputs for m in o.metrics}

    # -- checks -----------------------------------------------------------
    def check_labels(self, split, where="data"):
        """Label arrays that do not fit the loss or a metric fail before training,
        naming both shapes and the fix (see trainer/losses/labels.py)."""
        from trainer.losses.labels import label_problem

        sw = split.sample_weight
        for k, (o, (name, y)) in enumerate(zip(self.outputs, split.y.items())):
            shape = self.graph.shapes[self.graph.outputs[k]]
            if sw is not None and len(np.shape(sw)) == 2 and (
                    len(shape) < 2 or shape[0] != np.shape(sw)[1]):
                raise DataError(
                    f"{where}: sample_weight of shape {tuple(np.shape(sw))} weighs "
                    f"timesteps, but output '{name}' has shape (None, "
                    f"{', '.join(str(d) for d in shape)}); per-timestep weights need "
                    f"a sequence output (N, {np.shape(sw)[1]}, ...) — give one weight per "
                    f"sample (N,) otherwise")
            y = np.asarray(y)
            checks = [(o.loss, f"loss {o.loss_name}")]
            checks += [(m, f"metric {m.name}") for m in o.metrics]
            for contract, what in checks:
                problem = label_problem(contract, y, shape, name, what)
                if problem:
                    raise DataError(f"{where}: {problem}")

    # -- weights ----------------------------------------------------------
    def save(self, path, root=None):
        """Weights and optimizer state to ``path`` (the checkpoint layout); ``path``
        stays inside the folder ``root`` when given (trainer.fileio.confined)."""
        from trainer.store import checkpoint

        checkpoint.save(path, self, root=root)

    def save_weights(self, path, root=None):
        """The weights alone to ``path`` (Keras 2's ``save_weights`` HDF5 layout), inside
        the folder ``root`` when given."""
        from trainer.store import checkpoint

        checkpoint.save_weights(path, self, root=root)

    def get_weights(self):
        return {layer.name: layer.get_weights() for layer in self.layers}

    def set_weights(self, weights):
        for layer in self.layers:
            if layer.name in weights:
                layer.set_weights(weights[layer.name])

    def count_params(self):
        t = f = 0
        for layer in self.layers:
            a, b = layer.count_params()
            t, f = t + a, f + b
        return t, f

    def check_finite_inputs(self, split, where):
        """NaN/Inf (and, for float64 inputs, values that become Inf in float32) in
        the inputs: a DataError naming the first row. The clean case (every call of
        ``trainer predict``) reads each block of rows once — a sum (NaN or Inf in a
        block makes its sum non-finite) and, for float64, a min and max — on the
        engine's threads with no input-sized temporaries; only a block that fails
        (or whose finite sum overflowed) takes the exact elementwise test."""
        for name, x in split.x.items():
            if x.dtype.kind == "f" and len(x) and not _clean(x):
                bad = ~np.isfinite(x)
                if bad.any():
                    first = int(np.argwhere(bad.reshape(len(x), -1).any(axis=1))[0, 0])
                    raise DataError(f"{where}: input '{name}' holds {int(bad.sum())} NaN/Inf "
                                    f"values (first in row {first})")
                big = (np.abs(x) > np.finfo(np.float32).max  # Inf once cast to float32
                       if x.dtype.itemsize > 4 else np.zeros(1, bool))
                if big.any():
                    first = int(np.argwhere(big.reshape(len(x), -1).any(axis=1))[0, 0])
                    raise DataError(f"{where}: input '{name}' holds {int(big.sum())} values "
                                    f"beyond float32's range (±3.4e38; first in row {first}), "
                                    f"which become Inf; rescale them")


#: rows of an input checked at a time by ``_clean`` (about this many elements)
CHECK_BLOCK = 1 << 18


def _clean(x):
    """Whether x (float, ≥ 1 row) is all finite and, if wider than float32, within
    float32's range — without an input-sized temporary (see check_finite_inputs)."""
    from trainer.engine.kernels import parallel

    rows = max(1, CHECK_BLOCK // max(x[0].size, 1))
    limit = np.finfo(np.float32).max

    def part(start, stop):
        with np.errstate(over="ignore", invalid="ignore"):  # a finite sum may overflow
            return all(block_clean(x[a:min(a + rows, stop)])
                       for a in range(start, stop, rows))

    def block_clean(block):
        if not np.isfinite(np.add.reduce(block, axis=None)):
            if not np.isfinite(block).all():
                return False
        return x.dtype.itemsize <= 4 or (block.max() <= limit and block.min() >= -limit)

    return all(parallel.run(part, len(x), min_items=rows))


def timestep_mask(mask, p, sw=None):
    """The (N, T) mask of an output of shape (N, T, ...) (return_sequences), or None:
    a mask that does not match the output's first two axes is not a timestep mask.
    Per-timestep sample weights (N, T) take the masked path too (all ones when the
    output has no mask): Keras then averages over the N·T timesteps."""
    if p.ndim < 3:
        return None
    if mask is not None and mask.shape == p.shape[:2]:
        return mask
    if sw is not None and np.ndim(sw) == 2 and np.shape(sw) == p.shape[:2]:
        return np.ones(p.shape[:2], bool)
    return None


def timestep_rows(y, p, mask, sw=None):
    """Labels, predictions and weights with one row per (sample, timestep): the
    mask times the sample's weight, float64."""
    n, t = mask.shape
    y = np.asarray(y)
    yr = y.reshape(n * t, *y.shape[2:])
    pr = p.reshape(n * t, *p.shape[2:])
    w = mask.reshape(-1).astype(np.float64)
    if sw is not None:
        sw = np.asarray(sw, np.float64)
        w = w * (sw.reshape(-1) if sw.ndim == 2 else np.repeat(sw, t))
    return yr, pr, w
