"""`trainer fit` under MPI (``mpiexec -n N trainer fit config.yaml``): what differs
from a single process at the level of the run.

Rank 0 owns the run folder (config, run.json with the world, history, checkpoints,
callback files, progress and logs); the other ranks train alongside it and write
nothing (``Bystander`` stands in for their run folder). Start-up is agreed
(trainer.distributed.startup): the same config and code on every rank, a batch that
gives every rank rows, and a rank's data or resume error stops every rank alike.
"""

import json
import os

from trainer.distributed import startup
from trainer.errors import ConfigError


class Bystander:
    """The run folder as a rank other than 0 sees it: rank 0 writes it, this rank
    writes nothing."""

    def __init__(self, path=None):
        self.path = path
        self.meta = {}

    def finish(self, status, metrics=None, error=None):
        pass

    def write_history(self, rows):
        pass

    def write_array(self, name, array):
        pass

    def present(self):
        return True


def check_agreement(world, resolved):
    """The same resolved config and trainer code on every rank (exit 2 naming the
    ranks that differ)."""
    text = json.dumps(resolved, sort_keys=True, default=str)
    import hashlib

    config = hashlib.sha256(text.encode()).hexdigest()[:16]
    startup.check_same(world, "config", config)
    startup.check_same(world, "trainer code", startup.code_version())


def check_batch(world, cfg):
    """Every rank needs at least one row of every full batch."""
    size = cfg["fit"]["batch_size"]
    if size < world.size:
        raise startup.agreed(ConfigError(
            f"fit.batch_size is {size}, smaller than the {world.size} MPI ranks: each rank "
            f"needs at least one row of every batch; use fit.batch_size >= {world.size} "
            f"(the global batch, split across the ranks) or fewer ranks",
            where=cfg.where(("fit", "batch_size"))))


def refuse_sweep(world):
    if world is not None:
        raise startup.agreed(ConfigError(
            f"`trainer sweep` does not run under MPI ({world.size} ranks): a sweep "
            f"parallelises over trials (start several `trainer sweep` processes on one "
            f"Optuna storage); run each trial's training with `mpiexec -n N trainer fit`"))


def world_meta(world):
    """What run.json records of the world: size, and each rank's host and pid (MPI's
    report of a failed process names its pid)."""
    ranks = world.allgather({"host": world.host(), "pid": os.getpid()})
    return {"size": world.size, "hosts": sorted({r["host"] for r in ranks}), "ranks": ranks}


def announce(world_info):
    """One line on rank 0's stderr at start: which pid is which rank. When a rank dies
    outright (kill -9, out of memory) the launcher kills the others at once and its
    report names only the dead process's pid; this line (and run.json) name its rank."""
    import sys

    ranks = ", ".join(f"rank {i} pid {r['pid']} on {r['host']}"
                      for i, r in enumerate(world_info["ranks"]))
    print(f"MPI: {world_info['size']} ranks ({ranks})", file=sys.stderr, flush=True)
