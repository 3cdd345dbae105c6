"""`trainer summary`: the model table of a config."""

import click

from trainer.cli.base import handle_errors, on_rank_0


@click.command(epilog="\b\nExample:\n  trainer summary configs/quickstart.yaml")
@click.argument("config_path", metavar="CONFIG|RUN", type=click.Path())
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
@handle_errors
@on_rank_0
def summary(config_path, overrides):
    """Print the model table (layers, output shapes, parameter counts) of a config or a
    run folder."""
    from trainer.app import fit as api
    from trainer import console
    from trainer.data.pipeline import make_preprocessor
    from trainer.app.summary import render

    cfg = api.load_config(config_path, overrides)
    model = api.build(cfg)
    render(model, console.console(), preprocessor=make_preprocessor(
        cfg, model.input_names, model.output_names))
