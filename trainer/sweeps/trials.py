"""The trials of a sweep: points of the search × seeds, each with a stable id.

A trial's id is a hash of its resolved config (base file, fixed `set`, the point's
values and the seed), so rerunning a sweep finds the trials it already has.
"""

import hashlib
import itertools
import json

import numpy as np


class Trial:
    def __init__(self, point, seed, overrides, trial_id, index):
        self.point = point  # dotted key → value
        self.seed = seed
        self.overrides = overrides  # ["key=value", ...] for `trainer fit --set`
        self.id = trial_id
        self.index = index

    def label(self):
        return ", ".join(f"{k}={v}" for k, v in self.point.items())


def as_override(key, value):
    """A --set item whose value parses back (as YAML) to ``value``."""
    from trainer.config.loader import dump_text

    text = dump_text(value, default_flow_style=True, width=10**9).strip()
    if text.endswith("\n...") or text.endswith("..."):
        text = text.rsplit("\n", 1)[0].strip()
    return f"{key}={text}"


def sample(dist, rng):
    (kind, args), = dist.items()
    if kind == "choice":
        return args[int(rng.integers(len(args)))]
    lo, hi = args
    if kind == "uniform":
        return float(rng.uniform(lo, hi))
    if kind == "loguniform":
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    return int(rng.integers(lo, hi + 1))  # int: both ends included


def points(sweep):
    """The search points: every grid combination, or `trials` seeded random draws."""
    search = sweep["search"]
    if "grid" in search:
        keys = list(search["grid"])
        return [dict(zip(keys, combo)) for combo in itertools.product(
            *(search["grid"][k] for k in keys))]
    space = search["random"]
    rng = np.random.default_rng([sweep["seed"], 0x5EE9])
    return [{k: sample(d, rng) for k, d in space.items()} for _ in range(search["trials"])]


def fixed_overrides(sweep):
    return [as_override(k, v) for k, v in (sweep.get("set") or {}).items()]


def make_trial(sweep, point, seed, index, study_trial=None):
    """A trial; ``study_trial`` (an Optuna trial number) keeps two study trials that
    drew the same point apart."""
    from trainer.config import loader as config_lib

    overrides = fixed_overrides(sweep) + [as_override(k, v) for k, v in point.items()]
    overrides.append(f"seed={seed}")
    cfg = config_lib.load(sweep.base, overrides)  # validates every trial before any runs
    digest = hashlib.sha256(json.dumps([str(sweep.base), dict(cfg), study_trial], sort_keys=True,
                                       default=str).encode()).hexdigest()[:12]
    return Trial(point, seed, overrides, digest, index)


def expand(sweep):
    """Every trial of a grid/random sweep, in a fixed order."""
    out = []
    for point in points(sweep):
        for seed in sweep["seeds"]:
            out.append(make_trial(sweep, point, seed, len(out)))
    return out


def shard(trials, spec):
    """'i/N' → the trials whose position modulo N is i-1."""
    if not spec:
        return trials
    from trainer.errors import ConfigError
    try:
        i, n = (int(p) for p in spec.split("/"))
    except ValueError:
        raise ConfigError(f"--shard expects i/N like 1/4, got '{spec}'") from None
    if not 1 <= i <= n:
        raise ConfigError(f"--shard {spec}: i must be between 1 and N")
    return [t for k, t in enumerate(trials) if k % n == i - 1]
