"""Sweeps through Optuna (optional extra `[sweep]`): `search: {tpe: ...}`, or any search
with `storage:`, whose shared storage (an RDB URL such as postgresql://..., sqlite:///...,
or a journal file on a shared file system) lets any number of `trainer sweep` processes
on any number of machines work on one study. Each asked trial runs once, in the process
that asked for it; the study stops at `trials` (or the grid's size) in total.
"""

import functools
from pathlib import Path

from trainer.errors import ConfigError
from trainer.sweeps.runner import (IN_USE_TIMEOUT, Ledger, Stop, run_all, run_trial,
                                   sweep_dir, thread_env)


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("this sweep uses Optuna (search: tpe or storage:); install it with "
                          "pip install 'trainer[sweep]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def storage_of(sweep, optuna):
    url = sweep.get("storage")
    if url is None:
        return None
    if "://" in url:
        return url
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = Path(url)
    if not path.is_absolute():
        path = sweep.path.parent / path
    return JournalStorage(JournalFileBackend(str(path)))


def sampler_and_total(sweep, optuna):
    """The sampler and the study's size. With shared storage every process seeds its
    sampler differently, or they would all propose the same first points."""
    search = sweep["search"]
    seed = sweep["seed"] if "storage" not in sweep else None
    if "grid" in search:
        total = 1
        for values in search["grid"].values():
            total *= len(values)
        return optuna.samplers.GridSampler(search["grid"], seed=seed), total
    if "random" in search:
        return optuna.samplers.RandomSampler(seed=seed), search["trials"]
    return optuna.samplers.TPESampler(seed=seed), search["trials"]


def suggest(trial, space):
    point = {}
    for key, dist in space.items():
        (kind, args), = dist.items()
        if kind == "choice":
            point[key] = trial.suggest_categorical(key, args)
        elif kind == "int":
            point[key] = trial.suggest_int(key, args[0], args[1])
        else:
            point[key] = trial.suggest_float(key, args[0], args[1], log=kind == "loguniform")
    return point


def run_study(sweep, workers=1, runs_root="runs", progress=None,
              in_use_timeout=IN_USE_TIMEOUT):
    """Ask, run every seed of the point, tell the mean; until the study is full."""
    from trainer.sweeps.trials import make_trial

    optuna = _optuna()
    sampler, total = sampler_and_total(sweep, optuna)
    study = optuna.create_study(study_name=sweep.name, storage=storage_of(sweep, optuna),
                                sampler=sampler, load_if_exists=True,
                                direction="maximize" if sweep["mode"] == "max" else "minimize")
    search = sweep["search"]
    space = search.get("tpe") or search.get("random") or {
        k: {"choice": v} for k, v in search["grid"].items()}
    folder = sweep_dir(sweep, runs_root)
    env = thread_env(workers)
    stop = Stop()

    def worker():
        while not stop.is_set():
            trial = study.ask()
            if trial.number >= total:  # another process filled the study first
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                return
            point = suggest(trial, space)
            values = []
            for seed in sweep["seeds"]:
                t = make_trial(sweep, point, seed, trial.number, study_trial=trial.number)
                status, metrics, error = run_trial(
                    sweep, t, folder / t.id, env, in_use_timeout,
                    None if progress is None else functools.partial(progress, t, "waiting", {}),
                    stop)
                if progress:
                    progress(t, status, metrics, error)
                if status == "completed" and sweep["metric"] in metrics:
                    values.append(float(metrics[sweep["metric"]]))
            if values:
                study.tell(trial, sum(values) / len(values))
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)

    try:
        run_all([worker] * max(1, workers), workers, stop, folder)
    finally:
        rows = Ledger(folder).write()
    return rows, study
