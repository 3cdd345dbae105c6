"""What a sweep tells its user: no spread for one seed, skipped trials said as such on
a rerun, settings (not hashes) in plot legends, panels in a grid, and searched keys
that the base config overrides."""

import csv
import json
import struct

import pytest
from click.testing import CliRunner

from conftest import write_config
from test_sweep import BASE
from trainer.cli import main

ONE = """\
name: one
base: base.yaml
search:
  grid:
    compile.optimizer.Adam.lr: [0.01, 0.03]
seeds: [0]
metric: val_accuracy
mode: max
"""


def sweep(*args):
    return CliRunner().invoke(main, ["sweep", *map(str, args)])


@pytest.fixture
def one_seed(workdir):
    write_config(workdir, BASE, "base.yaml")
    path = write_config(workdir, ONE, "sweep.yaml")
    r = sweep(path, "--runs-root", workdir / "runs")
    assert r.exit_code == 0, r.output
    return path, r


def test_one_seed_shows_no_spread_and_a_rerun_says_skipped(one_seed, workdir):
    path, first = one_seed
    assert "±" not in first.output
    assert first.output.count(": completed val_accuracy=") == 2
    with open(workdir / "runs" / "one" / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["val_accuracy_std"] for r in rows] == ["", ""]  # no spread, not 0
    again = sweep(path, "--runs-root", workdir / "runs")
    assert again.exit_code == 0, again.output
    assert again.output.count(": skipped (already done) val_accuracy=") == 2
    assert ": completed" not in again.output
    report = json.loads(sweep(path, "--status", "--json", "--runs-root",
                              workdir / "runs").stdout)
    assert report["counts"] == {"completed": 2}  # the ledger keeps each trial's state


def test_two_seeds_show_mean_and_spread():
    from rich.console import Console

    from trainer.sweeps.summary import render, summarise

    class Sweep(dict):
        name = "s"

    sw = Sweep(metric="m", mode="min", search={"grid": {"a": [1]}})
    rows = [{"a": 1, "status": "completed", "m": 1.0}, {"a": 1, "status": "completed", "m": 3.0}]
    table = summarise(sw, rows)
    assert table[0]["m_mean"] == 2.0 and table[0]["m_std"] == 1.0
    console = Console(width=100, record=True)
    render(sw, table, console)
    assert "2.0000 ± 1.0000" in console.export_text()


def test_sweep_plot_legend_names_settings_not_hashes(one_seed, workdir, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    seen = {}
    real = Figure.savefig

    def capture(fig, *args, **kwargs):
        seen["labels"] = [t.get_text() for ax in fig.axes if ax.get_legend()
                          for t in ax.get_legend().get_texts()]
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", capture)
    r = CliRunner().invoke(main, ["plot", str(workdir / "runs" / "one"), "-o",
                                  str(workdir / "c.png")])
    assert r.exit_code == 0, r.output
    assert sorted(seen["labels"]) == ["lr=0.01", "lr=0.01 (val)", "lr=0.03", "lr=0.03 (val)"]


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    return struct.unpack(">II", head[16:24])


def test_a_plot_of_many_metrics_is_a_grid(workdir):
    """A two-output run logs loss, out_a_loss, out_b_loss, out_a_accuracy,
    out_b_accuracy: five panels in two rows of three, not one row of five."""
    pytest.importorskip("matplotlib")
    from trainer.app.plot import grid_shape, plot_runs

    names = ["loss", "a_loss", "b_loss", "a_accuracy", "b_accuracy"]
    run = workdir / "run"
    run.mkdir()
    header = ["epoch"] + names + [f"val_{n}" for n in names]
    rows = [[str(e)] + [str(0.5 / (e + 1))] * (len(header) - 1) for e in range(3)]
    (run / "history.csv").write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    width, height = _png_size(plot_runs([run], workdir / "p.png"))
    assert (width, height) == (1350, 720)  # 3 × 4.5 in by 2 × 3.6 in at 100 dpi
    assert [grid_shape(n) for n in (1, 2, 3, 4, 7)] == [(1, 1), (1, 2), (1, 3), (2, 3), (3, 3)]


SCHEDULED = BASE + """\
callbacks:
  - LearningRateScheduler: {schedule: {table: {0: 0.01, 1: 0.001}}}
"""


def test_searched_lr_overridden_by_a_scheduler_is_warned(workdir):
    write_config(workdir, SCHEDULED, "base.yaml")
    path = write_config(workdir, ONE.replace("[0.01, 0.03]", "[0.01]"), "sweep.yaml")
    r = sweep(path, "--runs-root", workdir / "runs")
    assert r.exit_code == 0, r.output
    warning = next(line for line in r.output.splitlines() if line.startswith("warning:"))
    assert "search key compile.optimizer.Adam.lr" in warning
    assert "LearningRateScheduler (callbacks[0], base.yaml:16" in warning
    assert "the trials may be identical" in warning
    r = sweep(path, "--runs-root", workdir / "runs", "--json")
    assert json.loads(r.stdout)["warnings"] == [warning[len("warning: "):]]


def test_other_overridden_search_keys_are_warned(workdir):
    from trainer.sweeps.checks import shadowed
    from trainer.sweeps.spec import load

    write_config(workdir, BASE, "base.yaml")
    clean = write_config(workdir, ONE, "clean.yaml")
    assert shadowed(load(clean)) == []
    other = ONE.replace("compile.optimizer.Adam.lr", "compile.optimizer.Adam.learning_rate")
    other = other.replace("    compile", "    seed: [1, 2]\n    compile")
    found = shadowed(load(write_config(workdir, other, "other.yaml")))
    assert len(found) == 2
    assert found[0].startswith("search key seed: each trial's seed comes from the sweep's")
    assert "also gives `lr` (base.yaml:12" in found[1] and "wins over learning_rate" in found[1]
