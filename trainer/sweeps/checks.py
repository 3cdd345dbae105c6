"""Searched keys that something else in the config overrides.

A sweep over ``compile.optimizer.SGD.lr`` whose base config has a
LearningRateScheduler gives trials that differ only before the scheduler's first
epoch (usually not at all): each trial would train alike, silently. These checks name
such keys before any trial runs, as warnings (the sweep still runs: the user may mean
it).
"""

from trainer.config.families import callbacks as callback_registry


def _search_keys(sweep):
    search = sweep["search"]
    return list(search.get("grid") or search.get("random") or search.get("tpe") or {})


def _callback_name(entry):
    if isinstance(entry, str):
        name = entry
    elif isinstance(entry, dict) and len(entry) == 1:
        name = next(iter(entry))
    else:
        return None
    return callback_registry.canonical(name) if name in callback_registry else name


def _scheduler_note(entry):
    """From which epoch a LearningRateScheduler entry sets the lr (0-based)."""
    args = entry.get("LearningRateScheduler") if isinstance(entry, dict) else None
    schedule = (args or {}).get("schedule") if isinstance(args, dict) else None
    table = schedule.get("table") if isinstance(schedule, dict) else None
    if isinstance(table, dict) and table:
        first = min(int(k) for k in table)
        return "every epoch" if first == 0 else f"every epoch from epoch {first}"
    return "every epoch"


def _lr_checks(key, cfg):
    parts = key.split(".")
    if len(parts) != 4 or parts[:2] != ["compile", "optimizer"] or parts[3] not in (
            "lr", "learning_rate"):
        return []
    out = []
    for i, entry in enumerate(cfg.get("callbacks") or []):
        if _callback_name(entry) == "LearningRateScheduler":
            out.append(f"search key {key}: the base config's LearningRateScheduler "
                       f"(callbacks[{i}], {cfg.where(('callbacks', i))}) sets the learning "
                       f"rate {_scheduler_note(entry)}, overriding the searched value; "
                       f"the trials may be identical (search the scheduler's arguments, "
                       f"or remove it from the base with the sweep's `set`)")
    optimizer = (cfg.get("compile") or {}).get("optimizer")
    args = optimizer.get(parts[2]) if isinstance(optimizer, dict) else None
    if parts[3] == "learning_rate" and isinstance(args, dict) and args.get("lr") is not None:
        where = cfg.where(("compile", "optimizer", parts[2], "lr"))
        out.append(f"search key {key}: the base config also gives `lr` ({where}), which "
                   f"wins over learning_rate as in Keras 2; the trials would be identical "
                   f"(search compile.optimizer.{parts[2]}.lr instead)")
    return out


def shadowed(sweep):
    """Warnings, one per searched key something else in the config overrides."""
    from trainer.config import loader as config_lib
    from trainer.sweeps.trials import fixed_overrides

    cfg = config_lib.load(sweep.base, fixed_overrides(sweep))
    out = []
    for key in _search_keys(sweep):
        if key == "seed":
            out.append("search key seed: each trial's seed comes from the sweep's `seeds`, "
                       "which overrides it; list the seeds there instead")
        out += _lr_checks(key, cfg)
    return out
