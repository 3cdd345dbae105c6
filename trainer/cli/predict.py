"""`trainer predict`: a run's model on new inputs."""

import click

from trainer.cli.base import handle_errors, on_rank_0


@click.command(epilog="""\b
Examples:
  trainer predict runs/quickstart-20261126-101500 --input new.npy --output preds.csv
  trainer predict imported.yaml --input new.npy     # model: {keras: model.keras}""")
@click.argument("run_dir", metavar="RUN|CONFIG", type=click.Path(exists=True))
@click.option("--input", "input_path", required=True, type=click.Path(),
              help=".npy, .npz (arrays by input name) or .csv; or images: a .jpg/.png "
                   "file, a folder of them or a glob ('photos/*.jpg')")
@click.option("--output", "output_path", type=click.Path(dir_okay=False),
              help=".npy, .npz or .csv (default: print a summary)")
@click.option("--checkpoint", type=click.Path(dir_okay=False))
@click.option("--batch-size", type=click.IntRange(min=1),
              help="rows per batch (default: the fit batch size, raised up to 1024 rows "
                   "while a batch's inputs stay under 32 MB)")
@click.option("--top", type=click.IntRange(min=1), default=None,
              help="Print each sample's K best classes and probabilities (ImageNet ids and "
                   "names for a 1000-class output, as Keras's decode_predictions).")
@handle_errors
@on_rank_0  # under mpiexec rank 0 predicts and writes the output once
def predict(run_dir, input_path, output_path, checkpoint, batch_size, top):
    """Predict with a run's final model, or a config's (its --checkpoint, the weights
    the model names, or a fresh initialisation); inputs get the run's preprocessing."""
    from trainer.app.predict import predict as run_predict

    outputs, names = run_predict(run_dir, input_path, output_path, batch_size, checkpoint)
    if top is not None:
        from trainer.applications.top import print_top

        print_top(outputs, names, top)
        return
    for name, out in zip(names, outputs):
        click.echo(f"{name}: {out.shape[0]} predictions of shape {out.shape[1:]}"
                   + (f" → {output_path}" if output_path else ""), err=output_path is None)
    if output_path is None:
        import numpy as np

        with np.printoptions(precision=4, suppress=True, threshold=50):
            for out in outputs:
                click.echo(str(out))
