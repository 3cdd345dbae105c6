"""Curves of runs: a PNG with matplotlib (optional extra `[plot]`), and a small
terminal chart printed at the end of fit (no dependency)."""

import csv
from pathlib import Path

from trainer.errors import ConfigError, DataError


def read_history(run_dir):
    path = Path(run_dir) / "history.csv"
    if not path.exists():
        raise DataError(f"{run_dir}: no history.csv (is it a run folder?)")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    columns = {}
    for row in rows:
        for k, v in row.items():
            if k != "epoch" and v not in ("", None):
                try:
                    columns.setdefault(k, []).append((int(row["epoch"]) + 1, float(v)))
                except ValueError:
                    pass
    return columns


def _seed_of(path):
    import json

    try:
        return json.loads((Path(path) / "trial.json").read_text(encoding="utf-8")).get("seed")
    except (OSError, ValueError, AttributeError):
        return None


def run_folders(paths):
    """Run folders from the arguments; a folder of runs (a sweep) gives all of them."""
    out = []
    for p in map(Path, paths):
        if (p / "history.csv").exists():
            out.append(p)
        elif p.is_dir():
            out.extend(sorted(c for c in p.iterdir() if (c / "history.csv").exists()))
    if not out:
        raise DataError(f"no run folders with a history.csv in {', '.join(map(str, paths))}")
    return out


def run_label(path, seeds=1):
    """A run's name in a legend: a sweep trial by its settings (``lr=0.01, units=32``,
    its seed when the sweep has several), any other run by its folder name."""
    import json

    try:
        trial = json.loads((Path(path) / "trial.json").read_text(encoding="utf-8"))
        point = dict(trial["point"])
    except (OSError, ValueError, KeyError, TypeError):
        return Path(path).name
    tails = [k.rsplit(".", 1)[-1] for k in point]
    short = {k: (t if tails.count(t) == 1 else k) for k, t in zip(point, tails)}
    parts = [f"{short[k]}={v:.4g}" if isinstance(v, float) else f"{short[k]}={v}"
             for k, v in point.items()]
    if seeds > 1 or not parts:
        parts.append(f"seed={trial.get('seed')}")
    return ", ".join(parts)


def grid_shape(n, columns=3):
    """(rows, columns) of a grid of n panels: at most ``columns`` side by side."""
    cols = min(max(1, n), columns)
    return -(-max(1, n) // cols), cols


def plot_runs(paths, output):
    """One PNG: a panel per metric (train solid, validation dashed), a colour per run,
    the panels in a grid of at most three columns; sweep trials are named by their
    settings."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("trainer plot needs matplotlib: pip install 'trainer[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folders = run_folders(paths)
    seeds = len({_seed_of(p) for p in folders})
    runs = [(run_label(p, seeds), read_history(p)) for p in folders]
    metrics = []
    for _, cols in runs:
        for k in cols:
            base = k[4:] if k.startswith("val_") else k
            if base != "lr" and base not in metrics:
                metrics.append(base)
    rows, cols = grid_shape(len(metrics))
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.6 * rows), squeeze=False)
    panels = axes.ravel()
    for ax in panels[len(metrics):]:
        ax.set_visible(False)
    for ax, metric in zip(panels, metrics):
        for i, (name, cols) in enumerate(runs):
            color = f"C{i % 10}"
            for key, style, label in ((metric, "-", name), (f"val_{metric}", "--",
                                                             f"{name} (val)")):
                if key in cols:
                    xs, ys = zip(*cols[key])
                    ax.plot(xs, ys, style, color=color, label=label, marker="." if len(xs) < 30
                            else None)
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output


BLOCKS = " ▁▂▃▄▅▆▇█"


def terminal_chart(values, height=6, label="loss"):
    """A small block chart of values per epoch, as lines of text."""
    values = [v for v in values if v == v]  # drop NaN
    if not values:
        return []
    if len(values) > 60:  # keep it narrow: average neighbouring epochs
        step = len(values) / 60
        values = [sum(values[int(i * step):int((i + 1) * step)] or [values[-1]]) /
                  max(1, len(values[int(i * step):int((i + 1) * step)])) for i in range(60)]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    levels = [round((v - lo) / span * (height * 8 - 1)) + 1 for v in values]
    lines = []
    for row in range(height - 1, -1, -1):
        cells = ""
        for lv in levels:
            fill = lv - row * 8
            cells += BLOCKS[max(0, min(8, fill))]
        tick = f"{hi:9.4g}" if row == height - 1 else (f"{lo:9.4g}" if row == 0 else " " * 9)
        lines.append(f"{tick} │{cells}")
    lines.append(" " * 10 + "└" + "─" * len(levels) + f" {label} per epoch")
    return lines
