"""The README's first pages do what they say: the short tour runs as written, every
command exiting 0, and the config excerpt is the quickstart config."""

import glob
import re
import shlex
import shutil

import yaml
from click.testing import CliRunner

from conftest import ROOT
from trainer.cli import main

README = (ROOT / "README.md").read_text(encoding="utf-8")


def block_after(heading, lang):
    """The first ```lang block after the line holding ``heading``."""
    start = README.index(heading)
    m = re.compile(rf"^```{lang}\n(.*?)^```", re.S | re.M).search(README, start)
    return m.group(1)


def tour_commands():
    out = []
    for line in block_after("## A short tour", "bash").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            assert words[0] == "trainer", line
            out.append(words[1:])
    return out


def test_the_config_excerpt_is_the_quickstart_config():
    excerpt = yaml.safe_load(block_after("A config, in brief", "yaml"))
    assert excerpt == yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())


def test_the_tour_runs_as_written(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    commands = tour_commands()
    assert len(commands) >= 10
    first = None
    for args in commands:
        if first is not None:
            args = [a.replace("runs/quickstart-<timestamp>", first) for a in args]
        args = [w for a in args for w in (sorted(glob.glob(a)) if "*" in a else [a])]
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, (args, r.output)
        if first is None:
            first, = glob.glob("runs/quickstart-*")
    assert len(glob.glob("runs/quickstart-*")) == 2
    assert (tmp_path / "preds.csv").is_file() and (tmp_path / "curves.png").is_file()
