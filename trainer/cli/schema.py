"""`trainer schema`: the JSON Schema of configs (or sweep files)."""

import json

import click

from trainer.cli.base import handle_errors, on_rank_0


@click.command(epilog="""\b
Examples:
  trainer schema > config.schema.json
  trainer schema LSTM            # one component's arguments, types and defaults""")
@click.argument("name", metavar="[NAME]", required=False)
@click.option("--sweep", "of_sweep", is_flag=True, help="The schema of sweep files instead.")
@handle_errors
@on_rank_0
def schema(name, of_sweep):
    """Print the JSON Schema of the config language (or of sweep files); with NAME, one
    component's arguments (a layer, loss, optimizer, callback, ...) readably."""
    from trainer.config.schema import schema_text

    if name is not None:
        from trainer.app.component_help import render

        click.echo(render(name), nl=False)
    elif of_sweep:
        from trainer.sweeps.spec import sweep_schema
        click.echo(json.dumps(sweep_schema(), indent=2))
    else:
        click.echo(schema_text(), nl=False)
