"""The CLI has one exit path: every command runs under ``cli.base.handle_errors``, and
no command leaves on its own (``sys.exit``, ``SystemExit``, ``click.echo("error: ...")``)."""

import ast
import json
from pathlib import Path

import click
from click.testing import CliRunner

from conftest import ROOT
from trainer.cli import main

CLI = Path(main.callback.__code__.co_filename).parent
QUICK = ROOT / "configs" / "quickstart.yaml"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _exits(path):
    """Lines of ``path`` that leave the process or print an error themselves."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            text = ast.unparse(node.func)
            args = " ".join(ast.unparse(a) for a in node.args)
            if text in ("sys.exit", "exit", "SystemExit", "os._exit") or \
                    (text == "click.echo" and "error:" in args):
                out.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.Raise) and node.exc is not None and \
                "SystemExit" in ast.unparse(node.exc):
            out.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return out


def test_only_the_error_handler_exits():
    modules = [p for p in sorted(CLI.glob("*.py")) if p.name != "base.py"]
    assert len(modules) >= 10  # the group and one module per command
    found = [line for p in modules for line in _exits(p)]
    assert not found, "exits outside cli.base.handle_errors:\n" + "\n".join(found)


def test_every_command_runs_under_the_handler():
    def leaves(group, prefix=""):  # a group's own callback does nothing: its commands
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from leaves(command, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}", command

    for name, command in leaves(main):
        assert isinstance(command, click.Command)
        assert getattr(command.callback, "__wrapped__", None) is not None, name


def test_fit_gate_failure_reports_once_with_the_run(tmp_path):
    r = invoke("fit", QUICK, "--set", "fit.epochs=1", "--json", "--run-dir", tmp_path / "g",
               "--expect", "loss<0")
    assert r.exit_code == 4
    out = json.loads(r.stdout)  # one object: the run's result and the error
    assert out["exit_code"] == 4 and "expect gate not met" in out["error"]
    assert out["run_dir"] == str(tmp_path / "g") and "loss" in out["metrics"]
    assert any(g["metric"] == "loss" and not g["passed"] for g in out["gates"])
    assert r.stderr.count("error: expect gate not met") == 1


def test_validate_failure_exits_2_with_one_json_report(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(QUICK.read_text(encoding="utf-8").replace("epochs:", "epochs: -1 #"),
                   encoding="utf-8")
    r = invoke("validate", bad, "--json")
    assert r.exit_code == 2
    report = json.loads(r.stdout)  # nothing else on stdout
    assert report["valid"] is False and report["problems"]
