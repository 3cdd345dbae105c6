"""`trainer plot`: loss and metric curves of runs as a PNG."""

import click

from trainer.cli.base import handle_errors, on_rank_0


@click.command(epilog="""\b
Example:
  trainer plot runs/quickstart-20261126-101500 runs/other -o curves.png""")
@click.argument("run_dirs", metavar="RUN...", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", default="curves.png", show_default=True,
              type=click.Path(dir_okay=False))
@handle_errors
@on_rank_0
def plot(run_dirs, output):
    """Loss and metric curves of one or several runs (or a sweep folder) in one PNG."""
    from trainer.app.plot import plot_runs

    click.echo(f"wrote {plot_runs(run_dirs, output)}")
