"""`trainer export`: a run's model as Keras files."""

import click

from trainer.cli.base import handle_errors, on_rank_0


@click.command(epilog="""\b
Examples:
  trainer export runs/quickstart-20261126-101500 model.keras    # Keras 3
  trainer export runs/quickstart-20261126-101500 --format keras-h5 model.h5
  trainer export runs/quickstart-20261126-101500 model.json     # the architecture only
  trainer export runs/quickstart-20261126-101500 model.onnx --with-preprocessing
  trainer export configs/quickstart.yaml model.onnx             # untrained or imported""")
@click.argument("run_dir", metavar="RUN|CONFIG", type=click.Path(exists=True))
@click.argument("output", metavar="OUT", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["keras", "keras-h5", "keras-json", "onnx"]),
              help="Default: from OUT's suffix (.keras → keras, .h5 → keras-h5, .json → "
                   "keras-json, .onnx → onnx).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Weights to export.")
@click.option("--with-preprocessing", is_flag=True,
              help="ONNX: put the run's preprocessing steps in front of the graph.")
@handle_errors
@on_rank_0
def export(run_dir, output, fmt, checkpoint, with_preprocessing):
    """Write a run's model as Keras files (a Keras 3 .keras archive, an .h5 that
    Keras 2's (and 3's) load_model reads, or the to_json() architecture) or as ONNX
    (also a CONFIG's model: imported or untrained)."""
    from pathlib import Path

    if fmt == "onnx" or (fmt is None and Path(output).suffix.lower() == ".onnx"):
        from trainer.app.export_onnx import export_onnx

        click.echo(f"wrote {export_onnx(run_dir, output, checkpoint, with_preprocessing)}")
        return
    from trainer.app.export import export_run

    click.echo(f"wrote {export_run(run_dir, output, fmt, checkpoint)}")
