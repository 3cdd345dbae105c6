"""`trainer export`: a run's model as Keras files."""

import click

from trainer.cli.base import handle_errors


@click.command(epilog="""\b
Examples:
  trainer export runs/quickstart-20261126-101500 model.keras    # Keras 3
  trainer export runs/quickstart-20261126-101500 --format keras-h5 model.h5
  trainer export runs/quickstart-20261126-101500 model.json     # the architecture only""")
@click.argument("run_dir", metavar="RUN", type=click.Path(exists=True, file_okay=False))
@click.argument("output", metavar="OUT", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["keras", "keras-h5", "keras-json"]),
              help="Default: from OUT's suffix (.keras → keras, .h5 → keras-h5, .json → "
                   "keras-json).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Weights to export.")
@handle_errors
def export(run_dir, output, fmt, checkpoint):
    """Write a run's model as Keras files: a Keras 3 .keras archive, an .h5 that
    Keras 2's (and 3's) load_model reads, or the to_json() architecture."""
    from trainer.app.export import export_run

    click.echo(f"wrote {export_run(run_dir, output, fmt, checkpoint)}")
