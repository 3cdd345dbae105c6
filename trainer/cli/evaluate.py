"""`trainer evaluate`: loss and metrics of a run or a config and checkpoint."""

import click

from trainer.cli.base import (EXPECT_HELP, echo_json, gate_items, handle_errors, joined_world,
                              json_result)


@click.command(epilog="""\b
Examples:
  trainer evaluate runs/quickstart-20261126-101500 --json
  trainer evaluate configs/quickstart.yaml --checkpoint best.h5 --expect 'accuracy>=0.9'
  trainer evaluate runs/quickstart-20261126-101500 --data holdout.npz""")
@click.argument("target", metavar="CONFIG|RUN", type=click.Path(exists=True))
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="Weights to evaluate (default: the run's checkpoints/final.h5, else "
                   "last.h5).")
@click.option("--data", metavar="SPLIT|FILE",
              help="Evaluate on this split of the config's data (train, validation, test) "
                   "or on a data file read like data.test (same array names). Default: "
                   "test, else validation.")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
@click.option("--expect", "cli_expect", multiple=True, metavar="GATE", help=EXPECT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@handle_errors
def evaluate(target, checkpoint, data, overrides, cli_expect, as_json):
    """Loss and metrics of a run's final model (or of CONFIG's: --checkpoint, the
    weights its model names, or a fresh initialisation) on its test data.

    Gates named `val_<metric>` are checked against the evaluated split's <metric>."""
    from pathlib import Path

    from trainer.app import fit as api, gates
    from trainer.app.evaluate import evaluate as evaluate_run
    from trainer import console
    from trainer.errors import GateError

    console.use_stderr(as_json)
    world = joined_world()
    results = evaluate_run(target, checkpoint, overrides, data=data)
    if world is not None and not world.is_root:
        return  # the results are the same on every rank: rank 0 reports them
    cfg = api.load_run_config(target, overrides) if Path(target).is_dir() else \
        api.load_config(Path(target), overrides)
    expect = {(k[4:] if k.startswith("val_") and k not in results else k): v
              for k, v in gate_items(cfg, cli_expect).items()}
    result = json_result()  # the metrics at the top (as ever), gates beside them if any
    result.update(results)
    if not as_json:
        from rich.table import Table

        table = Table("metric", "value")
        for k, v in results.items():
            table.add_row(k, f"{v:.6g}")
        console.console().print(table)
    try:
        checked = gates.check(expect, results)
    except GateError as exc:
        result["gates"] = exc.results
        raise
    if checked:
        result["gates"] = checked
    if as_json:
        echo_json(result)
