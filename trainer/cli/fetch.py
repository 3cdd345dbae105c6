"""`trainer fetch`: Keras's datasets and application weights into Keras's cache, ahead
of time (for CI caches)."""

import click

from trainer.cli.base import handle_errors, on_rank_0


@click.group(epilog="""\b
Examples:
  trainer fetch dataset mnist
  trainer fetch weights ResNet50 --no-top
  TRAINER_MIRROR=https://mirror.example/keras trainer fetch dataset cifar10""")
def fetch():
    """Fetch Keras's datasets and application weights into Keras's cache ahead of time
    (for CI caches); a file already in the cache is not downloaded again."""


_MIRROR = click.option("--mirror", metavar="URL", default=None,
                       help="Base URL replacing the scheme and host of Keras's URLs "
                            "(default: $TRAINER_MIRROR).")


@fetch.command("dataset")
@click.argument("name")
@_MIRROR
@handle_errors
@on_rank_0
def fetch_dataset(name, mirror):
    """Fetch the files of Keras's dataset NAME (mnist, cifar10, imdb, ...)."""
    from trainer.datasets.keras_files import KERAS_FILES, fetch as fetch_files
    from trainer.errors import ConfigError, suggest

    if name not in KERAS_FILES:
        raise ConfigError(f"unknown Keras dataset '{name}'.{suggest(name, KERAS_FILES)} "
                          f"Known: {', '.join(KERAS_FILES)}")
    for path in fetch_files(name, mirror=mirror):
        click.echo(str(path))


@fetch.command("weights")
@click.argument("name")
@click.option("--no-top", is_flag=True,
              help="The file without the classifier (include_top: false).")
@_MIRROR
@handle_errors
@on_rank_0
def fetch_weights(name, no_top, mirror):
    """Fetch the imagenet weight file of Keras application NAME (ResNet50, VGG16, ...)."""
    from trainer.applications.expand import application_model, imagenet_weights

    app = application_model(name, {"weights": "imagenet", "include_top": not no_top},
                            place="fetch weights")
    click.echo(str(imagenet_weights(app, mirror=mirror)))
