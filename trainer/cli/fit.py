"""`trainer fit`: train from a config (or resume a run), then check its gates."""

import click

from trainer.cli.base import (EXPECT_HELP, LOG_FORMAT, echo_json, gate_items, handle_errors,
                              joined_world, json_output, json_result)


@click.command(epilog="""\b
Examples:
  trainer fit configs/quickstart.yaml
  trainer fit configs/quickstart.yaml --set fit.epochs=5 --expect 'val_accuracy>=0.9'
  trainer fit configs/quickstart.yaml --json --run-dir runs/ci
  trainer fit --resume runs/quickstart-20261126-101500 --set fit.epochs=50""")
@click.argument("config_path", metavar="[CONFIG|RUN]", required=False, type=click.Path())
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a config value (repeatable).")
@click.option("--run-dir", type=click.Path(file_okay=False),
              help="Write the run here: a new or empty folder (a folder holding a run is "
                   "refused: --resume it, or --force).")
@click.option("--resume", "resume", type=click.Path(file_okay=False), metavar="RUN_DIR",
              help="Continue the run in RUN_DIR from its last checkpoint, exactly as if it "
                   "had never stopped (config: RUN_DIR/config.yaml unless CONFIG is given).")
@click.option("--force", is_flag=True,
              help="With --resume: accept config changes beyond the safe ones "
                   "(fit.epochs, verbose, expect, logging callbacks). With --run-dir: "
                   "delete the run already there (only files trainer wrote) first.")
@click.option("--expect", "cli_expect", multiple=True, metavar="GATE", help=EXPECT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON result on stdout.")
@LOG_FORMAT
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@handle_errors
def fit(config_path, overrides, run_dir, resume, force, cli_expect, as_json, log_format, quiet):
    """Train the model of CONFIG; write the run folder; check `expect:` gates. With
    --resume, continue a stopped run."""
    from trainer.sweeps.parent import die_with_sweep

    die_with_sweep()  # a sweep's trial: first, so it never outlives the sweep
    from trainer.app import fit as api, gates
    from trainer import events
    from trainer.callbacks.event_logger import EventLogger
    from trainer.errors import ConfigError, GateError
    from trainer.training.resume import sigterm_as_interrupt

    world = joined_world()  # first: the other ranks' stdout (events too) goes nowhere
    json_output(as_json, log_format)
    if resume is None and config_path is None:
        raise ConfigError("fit needs a CONFIG file (or --resume RUN_DIR)")
    if resume is not None and run_dir is not None:
        raise ConfigError("--run-dir and --resume exclude each other: a resumed run "
                          "continues in its own folder")
    if force and resume is None and run_dir is None:
        raise ConfigError("--force applies with --resume (accept config changes) or "
                          "--run-dir (replace the run there)")
    def load():
        if config_path is not None:
            return api.load_config(config_path, overrides)
        return api.load_run_config(resume, overrides)

    if world is None:
        cfg = load()
    else:  # a config error is every rank's: reported once, by rank 0
        from trainer.distributed.startup import together

        cfg = together(world, load)
    expect = gate_items(cfg, cli_expect)
    events.emit("run_started", config=str(config_path or resume), resume=resume is not None)
    with sigterm_as_interrupt():
        run, logs = api.fit(cfg, run_dir=run_dir, verbose=0 if quiet else None,
                            resume=resume, force=force, callbacks=[EventLogger()],
                            expect=expect)
    if world is not None and not world.is_root:
        return  # rank 0 reports the run, checks its gates and writes its files
    result = json_result()
    result.update(run_dir=str(run.path), metrics=logs)
    try:
        result["gates"] = gates.evaluate_and_report(expect, logs, run.path)
    except GateError as exc:  # reported by handle_errors, inside the run's result
        result["gates"] = exc.results
        raise
    events.emit("run_finished", run_dir=str(run.path), metrics=logs)
    if as_json:
        echo_json(result)
    elif not quiet:
        from trainer.app.plot import read_history, terminal_chart

        losses = [v for _, v in read_history(run.path).get("loss", [])]
        for line in terminal_chart(losses) if len(losses) > 1 else []:
            click.echo(line, err=log_format == "jsonl")
        click.echo(f"run saved to {run.path}", err=log_format == "jsonl")
