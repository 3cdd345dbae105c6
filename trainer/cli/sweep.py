"""`trainer sweep`: a grid or random search over config keys."""

import json

import click

from trainer.cli.base import Exit, echo_json, handle_errors, json_result


@click.command(epilog="""\b
Examples:
  trainer sweep sweeps/lr.yaml --workers 2
  trainer sweep sweeps/lr.yaml --shard 1/4        # one job of a 4-job CI matrix
  trainer sweep sweeps/lr.yaml --status""")
@click.argument("sweep_path", metavar="SWEEP", type=click.Path(dir_okay=False))
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Trials run in parallel processes (threads per worker are divided).")
@click.option("--shard", "shard_spec", metavar="i/N", help="Run only this share of the trials.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first failed trial.")
@click.option("--status", "only_status", is_flag=True, help="Report progress; run nothing.")
@click.option("--runs-root", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--in-use-timeout", type=click.FloatRange(min=0), default=300, show_default=True,
              metavar="SECONDS",
              help="Wait this long for a trial whose run folder another process is using "
                   "(a killed sweep's trial still stopping, another machine's sweep); "
                   "then it is reported 'in use', not run, and a rerun picks it up.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def sweep(sweep_path, workers, shard_spec, fail_fast, only_status, runs_root, in_use_timeout,
          as_json):
    """Run a grid or random search over config keys; resumable; ranked results."""
    from trainer import console
    from trainer.app import sweep as sweeps
    from trainer.sweeps.summary import render
    from trainer.app.mpi import refuse_sweep
    from trainer.distributed.world import current

    refuse_sweep(current())  # under mpiexec with more than one rank
    console.use_stderr(as_json)
    out = console.console()

    def progress(trial, status, metrics, error):
        metric = sweep_cfg_metric[0]
        value = metrics.get(metric)
        note = f"{metric}={value:.4f}" if isinstance(value, float) else (error or status)
        from rich.markup import escape

        out.print(escape(f"trial {trial.id} seed {trial.seed} [{trial.label()}]: {status} "
                         f"{note}"))

    sweep_cfg_metric = ["val_loss"]
    warnings = []
    if only_status:
        spec_, rows, table = sweeps.status(sweep_path, runs_root)
    else:
        from trainer.sweeps.checks import shadowed
        from trainer.sweeps.spec import load

        loaded = load(sweep_path)
        sweep_cfg_metric[0] = loaded["metric"]
        warnings = shadowed(loaded)  # searched keys the config overrides: said first
        for w in warnings:
            click.echo(f"warning: {w}", err=True)
        spec_, rows, table = sweeps.run(sweep_path, workers, shard_spec, fail_fast, runs_root,
                                        progress, in_use_timeout)
    counts = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    result = json_result()  # values JSON can't hold become strings, as they were
    result.update(json.loads(json.dumps({"sweep": spec_.name, "counts": counts,
                                         "ranking": table, "trials": rows,
                                         "warnings": warnings}, default=str)))
    if not as_json:
        out.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
        if table:
            render(spec_, table, out)
    failed = any(r["status"] == "failed" for r in rows) and fail_fast and not only_status
    if not only_status and not failed:
        from trainer.errors import GateError
        try:
            result["gates"] = sweeps.check_gates(spec_, table)
        except GateError as exc:  # printed with the object, its error inside
            result["gates"] = exc.results
            raise
    if as_json:
        echo_json(result)
    if failed:
        raise Exit(1)
