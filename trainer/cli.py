"""The `trainer` command: a thin click group. Each command parses its arguments,
calls ``trainer.api``, prints, and maps errors to the documented exit codes:

0 success · 1 internal error · 2 bad usage or config · 3 bad or missing data ·
4 an `expect:` gate not met · 5 training diverged · 130 interrupted (Ctrl-C) ·
143 terminated (SIGTERM); both write a resumable checkpoint first.

Heavy imports stay inside the commands so that `trainer --help` is instant.
"""

import functools
import json
import sys

import click

from trainer import __version__

EPILOG = """\b
Examples:
  trainer fit configs/quickstart.yaml
  trainer fit configs/quickstart.yaml --set fit.epochs=3 --set compile.optimizer.Adam.lr=0.01
  trainer evaluate runs/quickstart-20261126-101500 --json
  trainer summary configs/quickstart.yaml
"""


def _emit_error(message, code, as_json):
    if as_json:
        click.echo(json.dumps({"error": message, "exit_code": code}))
    click.echo(f"error: {message}", err=True)


def handle_errors(fn):
    """One exit path: user errors print one message; internal errors a short note
    (the traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        debug = (ctx.find_root().params or {}).get("debug", False)
        as_json = kwargs.get("as_json", False)
        from trainer.errors import TrainerError

        try:
            return fn(*args, **kwargs)
        except TrainerError as exc:
            if debug:
                raise
            _emit_error(str(exc), exc.exit_code, as_json)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            if debug:
                raise
            from trainer.errors import Terminated

            code = 143 if isinstance(exc, Terminated) else 130
            _emit_error("terminated" if code == 143 else "interrupted", code, as_json)
            sys.exit(code)
        except Exception as exc:  # noqa: BLE001 - the one place internal errors surface
            if debug:
                raise
            _emit_error(f"internal error: {type(exc).__name__}: {exc} "
                        f"(run with --debug for the traceback)", 1, as_json)
            sys.exit(1)

    return wrapper


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trainer")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def main(debug):
    """Declarative neural-network training: one YAML/JSON file, Keras 2 vocabulary."""


@main.command(epilog="""\b
Examples:
  trainer fit configs/quickstart.yaml --set fit.epochs=5
  trainer fit --resume runs/quickstart-20261126-101500
  trainer fit --resume runs/quickstart-20261126-101500 --set fit.epochs=50""")
@click.argument("config_path", metavar="[CONFIG]", required=False,
                type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a config value (repeatable).")
@click.option("--run-dir", type=click.Path(file_okay=False), help="Write the run here.")
@click.option("--resume", "resume", type=click.Path(file_okay=False), metavar="RUN_DIR",
              help="Continue the run in RUN_DIR from its last checkpoint, exactly as if it "
                   "had never stopped (config: RUN_DIR/config.yaml unless CONFIG is given).")
@click.option("--force", is_flag=True,
              help="With --resume: accept config changes beyond the safe ones "
                   "(fit.epochs, verbose, expect, logging callbacks).")
@click.option("--json", "as_json", is_flag=True, help="Print the final metrics as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@handle_errors
def fit(config_path, overrides, run_dir, resume, force, as_json, quiet):
    """Train the model of CONFIG; write the run folder. With --resume, continue a
    stopped run."""
    from trainer import api, console
    from trainer.errors import ConfigError
    from trainer.resume import sigterm_as_interrupt

    console.use_stderr(as_json)
    if resume is None and config_path is None:
        raise ConfigError("fit needs a CONFIG file (or --resume RUN_DIR)")
    if resume is not None and run_dir is not None:
        raise ConfigError("--run-dir and --resume exclude each other: a resumed run "
                          "continues in its own folder")
    if force and resume is None:
        raise ConfigError("--force only applies with --resume")
    if config_path is not None:
        cfg = api.load_config(config_path, overrides)
    else:
        cfg = api.load_run_config(resume, overrides)
    with sigterm_as_interrupt():
        run, logs = api.fit(cfg, run_dir=run_dir, verbose=0 if quiet else None,
                            resume=resume, force=force)
    if as_json:
        click.echo(json.dumps({"run_dir": str(run.path), "metrics": logs}))
    else:
        click.echo(f"run saved to {run.path}", err=False)


@main.command(epilog="\b\nExample:\n  trainer evaluate runs/quickstart-20261126-101500 --json")
@click.argument("target", metavar="CONFIG|RUN", type=click.Path(exists=True))
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Weights to evaluate.")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@handle_errors
def evaluate(target, checkpoint, overrides, as_json):
    """Loss and metrics of a run (or CONFIG with --checkpoint) on its test data."""
    from trainer import api, console

    console.use_stderr(as_json)
    results = api.evaluate(target, checkpoint, overrides)
    if as_json:
        click.echo(json.dumps(results))
        return
    from rich.table import Table

    table = Table("metric", "value")
    for k, v in results.items():
        table.add_row(k, f"{v:.6g}")
    console.console().print(table)


@main.command(epilog="\b\nExample:\n  trainer summary configs/quickstart.yaml")
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
@handle_errors
def summary(config_path, overrides):
    """Print the model table (layers, output shapes, parameter counts)."""
    from trainer import api, console
    from trainer.summary import render

    cfg = api.load_config(config_path, overrides)
    render(api.build(cfg), console.console())


@main.command(epilog="\b\nExample:\n  trainer validate configs/quickstart.yaml")
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def validate(config_path, overrides, as_json):
    """Check CONFIG against the schema and build the model (no data is read)."""
    from trainer import api

    cfg = api.load_config(config_path, overrides)
    api.build(cfg)
    if as_json:
        click.echo(json.dumps({"valid": True, "problems": []}))
    else:
        click.echo(f"{config_path}: valid")


@main.command(epilog="\b\nExample:\n  trainer schema > config.schema.json")
def schema():
    """Print the JSON Schema of the config language."""
    from trainer.schema import schema_text

    click.echo(schema_text(), nl=False)
