"""`trainer validate`: check configs without reading data."""

import click

from trainer.cli.base import Exit, echo_json, handle_errors, on_rank_0


@click.command(epilog="""\b
Examples:
  trainer validate configs/quickstart.yaml
  trainer validate configs/*.yaml --format github    # annotations in GitHub Actions""")
@click.argument("config_paths", metavar="CONFIG|RUN...", nargs=-1, required=True,
                type=click.Path())
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
@click.option("--format", "fmt", type=click.Choice(["text", "github"]), default="text")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
@on_rank_0
def validate(config_paths, overrides, fmt, as_json):
    """Check configs: schema, dry build with shape inference, and checks that read no
    data (loss vs output, labels vs loss, metric k, callback monitors, gates)."""
    from trainer.app.validate import lint_file

    report, failed = [], False
    for path in config_paths:
        problems, _ = lint_file(path, overrides)
        failed |= any(p.severity == "error" for p in problems)
        report.append({"config": path, "valid": not any(p.severity == "error"
                                                         for p in problems),
                       "problems": [p.as_dict(path) for p in problems]})
        if as_json:
            continue
        for p in problems:
            click.echo(p.github(path) if fmt == "github" else p.text())
        if not problems:
            click.echo(f"{path}: valid")
    if as_json:  # one object: a config's report, or all of them in "configs"
        echo_json(report[0] if len(report) == 1 else {"valid": not failed, "configs": report})
    if failed:
        raise Exit(2)
