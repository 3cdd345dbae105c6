"""`trainer schema`: the JSON Schema of configs (or sweep files)."""

import json

import click

from trainer.cli.base import handle_errors


@click.command(epilog="\b\nExample:\n  trainer schema > config.schema.json")
@click.option("--sweep", "of_sweep", is_flag=True, help="The schema of sweep files instead.")
@handle_errors
def schema(of_sweep):
    """Print the JSON Schema of the config language (or of sweep files)."""
    from trainer.config.schema import schema_text

    if of_sweep:
        from trainer.sweeps.spec import sweep_schema
        click.echo(json.dumps(sweep_schema(), indent=2))
    else:
        click.echo(schema_text(), nl=False)
