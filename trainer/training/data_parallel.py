"""One optimizer step, and one evaluation, with the batch split over MPI ranks.

Every rank holds the whole model. A step's global batch (the rows a single process
takes, in its order) is split by rows (``shard.split``); each rank runs forward and
backward on its rows with the loss normalised by the global batch's size, so its
gradients are its share of the global gradient; one fused allreduce adds up the
gradients, the loss values and the metric accumulators' increments; every rank then
adds the weight penalties and applies the same update. Logged numbers are the global
batch's, and the loop's state (the epoch's sums, the metric accumulators) is the same
on every rank and does not depend on the world size.
"""

import numpy as np

from trainer.distributed import shard as shard_lib


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


def train_step(model, world, xs, ys, sw, global_rows, lo, hi):
    """One optimizer step of the global batch, this rank holding rows [lo, hi) of it.
    Returns the global batch's (total loss, per-output losses)."""
    before = metric_states(model)
    model.reset_metrics()
    with shard_lib.active(shard_lib.Shard(world, global_rows, lo, hi)):
        total, per_output, preds, masks = model.compute_gradients(xs, ys, sw, penalties=False)
        if np.isfinite(total):
            model._update_metrics(ys, preds, sw, masks)
    grads = model.grads()
    delta = metric_states(model)
    summed = world.allreduce_sum([*grads, np.float64(total), np.asarray(per_output, np.float64),
                                  *_flat(delta)])
    for g, s in zip(grads, summed):
        g[...] = s
    total = float(summed[len(grads)]) + model.regularization()
    per_output = [float(v) for v in summed[len(grads) + 1]]
    _put(delta, summed[len(grads) + 2:], base=before)
    if np.isfinite(total):
        model.add_penalty_gradients()
        model.optimizer.apply(model.params(), grads)
    return total, per_output


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
