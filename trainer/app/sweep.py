"""`trainer sweep`: run (or report on) a sweep file."""

from trainer.sweeps import spec
from trainer.sweeps.runner import IN_USE_TIMEOUT, Ledger, run_trials, sweep_dir
from trainer.sweeps.summary import summarise, write_summary
from trainer.sweeps.trials import expand, shard


def status(path, runs_root="runs"):
    """The ledger as it stands, without running anything."""
    sweep = spec.load(path)
    trials = [] if sweep.uses_optuna else expand(sweep)
    rows = Ledger(sweep_dir(sweep, runs_root), trials).rows()
    return sweep, rows, summarise(sweep, rows)


def run(path, workers=1, shard_spec=None, fail_fast=False, runs_root="runs", progress=None,
        in_use_timeout=IN_USE_TIMEOUT):
    """Run every unfinished trial (of this shard); write ledger.csv and summary.csv.
    Returns (sweep, ledger rows, summary table). A trial whose run folder another
    process holds is waited for up to ``in_use_timeout`` seconds (runner.run_trial)."""
    sweep = spec.load(path)
    folder = sweep_dir(sweep, runs_root)
    if sweep.uses_optuna:
        from trainer.sweeps.optuna_backend import run_study
        rows, _ = run_study(sweep, workers, runs_root, progress, in_use_timeout)
    else:
        trials = shard(expand(sweep), shard_spec)
        rows, _ = run_trials(sweep, trials, workers, fail_fast, runs_root, progress,
                             in_use_timeout)
    table = summarise(sweep, rows)
    write_summary(folder / "summary.csv", table)
    return sweep, rows, table


def check_gates(sweep, table):
    """`expect:` of a sweep applies to the best point's mean."""
    from trainer.app import gates

    if not sweep.get("expect") or not table:
        return []
    best = table[0]
    metrics = {k[:-5]: v for k, v in best.items() if k.endswith("_mean")}
    return gates.check(sweep["expect"], metrics)
