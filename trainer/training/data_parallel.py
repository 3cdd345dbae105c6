"""One optimizer step, and one evaluation, with the batch split over MPI ranks and/or
into micro-batches (gradient accumulation, ``fit.accumulate_steps``).

Every rank holds the whole model. A step's global batch (the rows a single process
takes, in its order) is cut into micro-batches of ``fit.batch_size`` rows, and each
micro-batch is split by rows over the ranks (``shard.split``); each rank runs forward
and backward on its rows of each micro-batch with the loss normalised by the global
batch's size, so its gradients are its share of the global gradient and the
micro-batches' gradients add up to it. One fused allreduce per optimizer step (not per
micro-batch) adds up the gradients, the loss values and the metric accumulators'
increments; every rank then adds the weight penalties and applies the same update.
Logged numbers are the global batch's, and the loop's state (the epoch's sums, the
metric accumulators) is the same on every rank and depends on neither the world size
nor the number of micro-batches.

A single process that accumulates is the world of one rank (``ALONE``): the same
code, no communication.
"""

import numpy as np

from trainer.build.model import timestep_mask
from trainer.distributed import shard as shard_lib
from trainer.errors import ConfigError


class Alone:
    """A single process as a world of one rank: a sum over ranks is the value itself."""

    size, rank, is_root = 1, 0, True

    def allreduce_sum(self, arrays, dtype=None):
        return [np.array(a) for a in arrays]  # copies, each of its input's dtype


ALONE = Alone()


def rows_of(world, rows):
    """This rank's rows of a global batch's ``rows`` (positions lo..hi of it)."""
    lo, hi = shard_lib.split(len(rows), world.size)[world.rank]
    return rows[lo:hi], lo, hi


def metric_states(model):
    return [(m, m.get_state()) for o in model.outputs for m in o.metrics]


def _flat(states):
    return [np.asarray(v, np.float64) for _, state in states for v in state.values()]


def _put(states, values, base=None):
    """Set each metric's state from ``values`` (flattened as ``_flat``), plus ``base``."""
    values = iter(values)
    for k, (m, state) in enumerate(states):
        new = {}
        for key, old in state.items():
            v = next(values)
            if base is not None:
                v = v + np.asarray(base[k][1][key], np.float64)
            new[key] = np.asarray(v).astype(np.asarray(old).dtype)
        m.set_state(new)


def optimizer_step(model, world, rows, take, micro=None, streams=(), dtype=np.float64):
    """One optimizer step of the global batch ``rows`` (row positions in the split),
    as micro-batches of ``micro`` rows (None: one), each split over the ranks of
    ``world`` (None: this process alone). ``take(rows)`` gives (xs, ys, sample
    weights) of some rows. ``streams``: the random generators the forward pass draws
    from — every micro-batch starts from the step's first state and draws the masks of
    the whole global batch, keeping its rows (``shard.draw``), so each row's mask and
    the streams' final state are one process's with the whole batch. ``dtype``: the
    allreduce buffer's. Returns the global batch's (total loss, per-output losses)."""
    world = world or ALONE
    n = len(rows)
    micro = micro or n
    before = metric_states(model)
    model.reset_metrics()
    start = [(g, g.bit_generator.state) for g in streams]
    sums, total, per_output = None, 0.0, None
    for a in range(0, max(n, 1), micro):
        b = min(a + micro, n)
        lo, hi = shard_lib.split(b - a, world.size)[world.rank]
        if a:
            for g, state in start:
                g.bit_generator.state = state
        xs, ys, sw = take(rows[a + lo:a + hi])
        with shard_lib.active(shard_lib.Shard(world, n, a + lo, a + hi, b - a)):
            t, po, preds, masks = model.compute_gradients(xs, ys, sw, penalties=False)
            if np.isfinite(t):
                model._update_metrics(ys, preds, sw, masks)
        if micro < n:
            refuse_masked_losses(model, preds, masks, sw)
        grads = model.grads()
        if sums is None:
            sums = grads if b >= n else [g.copy() for g in grads]
        else:
            for s, g in zip(sums, grads):
                s += g
        total += t
        po = np.asarray(po, np.float64)
        per_output = po if per_output is None else per_output + po
    delta = metric_states(model)
    summed = world.allreduce_sum([*sums, np.float64(total), per_output, *_flat(delta)],
                                 dtype=dtype)
    grads = model.grads()
    for g, s in zip(grads, summed):
        g[...] = s
    total = float(summed[len(grads)]) + model.regularization()
    per_output = [float(v) for v in summed[len(grads) + 1]]
    if not np.isfinite(total):  # no update and no metrics from it, as one process
        for m, state in before:
            m.set_state(state)
        return total, per_output
    _put(delta, summed[len(grads) + 2:], base=before)
    model.add_penalty_gradients()
    model.optimizer.apply(model.params(), grads)
    return total, per_output


def refuse_masked_losses(model, preds, masks, sw):
    """A loss masked per timestep is normalised by the unmasked timesteps of the whole
    batch, which a micro-batch cannot know before the last one ran: refused rather
    than normalised per micro-batch (which would not be the batch's loss)."""
    for k, (o, p) in enumerate(zip(model.outputs, preds)):
        if timestep_mask(masks[k] if masks else None, p, sw) is not None:
            raise ConfigError(
                f"fit.accumulate_steps > 1 cannot train output '{o.name}': its loss is "
                f"masked per timestep (mask_zero/Masking, or per-timestep sample "
                f"weights) and normalised by the whole batch's unmasked timesteps, "
                f"which a micro-batch does not know; use fit.accumulate_steps: 1 "
                f"(and a smaller fit.batch_size if memory is the reason)")


def evaluate(model, world, split, batch_size, class_weight, means, plan, weights):
    """Each rank evaluates its rows of every batch; the loss sums and the metric
    accumulators are added up once at the end. ``means`` (EpochMeans, reset) and the
    model's metrics (reset) end holding the global results."""
    for rows in plan:
        mine, lo, hi = rows_of(world, rows)
        xs, ys, sw = split.take(mine)
        sw = weights(model, split, mine, class_weight, ys, sw)
        with shard_lib.active(shard_lib.Shard(world, len(rows), lo, hi)):
            total, per_output = model.test_on_batch(xs, ys, sw, penalties=False)
        means.add([total] + (per_output if model.multi_output else []), len(rows))
    states = metric_states(model)
    names = list(means.sums)
    summed = world.allreduce_sum([np.array([means.sums[n] for n in names], np.float64),
                                  *_flat(states)])
    penalty = model.regularization()  # the same for every batch: added once per row
    for i, n in enumerate(names):
        means.sums[n] = float(summed[0][i]) + (penalty * means.count if n == "loss" else 0.0)
    _put(states, summed[1:])
