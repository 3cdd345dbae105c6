"""The `trainer` command: a thin click group. Each command parses its arguments,
calls ``trainer.app``, prints, and leaves through one exit path (``base.handle_errors``)
that maps errors to the documented exit codes:

0 success · 1 internal error · 2 bad usage or config · 3 bad or missing data (or a
damaged run folder) ·
4 an `expect:` gate not met · 5 training diverged · 6 a run file could not be written
(full disk, read-only or deleted folder) · 130 interrupted (Ctrl-C) · 143 terminated
(SIGTERM); both write a resumable checkpoint first.

One module per command; heavy imports stay inside the commands so that `trainer --help`
is instant.
"""

import click

from trainer import __version__
from trainer.cli import (evaluate, export, fetch, fit, plot, predict, schema, summary, sweep,
                         validate)

EPILOG = """\b
Examples:
  trainer fit configs/quickstart.yaml
  trainer fit configs/quickstart.yaml --set fit.epochs=3 --set compile.optimizer.Adam.lr=0.01
  trainer evaluate runs/quickstart-20261126-101500 --json
  trainer summary configs/quickstart.yaml
"""


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trainer")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def main(debug):
    """Declarative neural-network training: one YAML/JSON file, Keras 2 vocabulary."""
    from trainer import console
    from trainer.cli.base import others_leave

    console.use_stderr(False)  # each command decides (one process may run several)
    if not debug:
        quiet_float_warnings()
    ctx = click.get_current_context()
    if ctx.invoked_subcommand is not None:  # under MPI, before its arguments are parsed
        others_leave(main.get_command(ctx, ctx.invoked_subcommand))


#: NumPy's floating-point warnings (any thread): a diverging run overflows on the way
#: to the NaN loss that the loop reports as one error (exit 5)
FLOAT_WARNINGS = r"(overflow|invalid value|divide by zero|underflow) encountered"


def quiet_float_warnings():
    """Silence NumPy's overflow/invalid-value warnings for this process: they point into
    trainer's internals and come before the one message the run ends with (a NaN loss
    is exit 5 with the checkpoint kept). ``--debug`` keeps them."""
    import warnings

    warnings.filterwarnings("ignore", message=FLOAT_WARNINGS, category=RuntimeWarning)


for command in (fit.fit, evaluate.evaluate, summary.summary, validate.validate,
                predict.predict, plot.plot, sweep.sweep, export.export, schema.schema,
                fetch.fetch):
    main.add_command(command)
