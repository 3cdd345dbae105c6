"""The sweep's results: per point, the metric's mean ± std over seeds, ranked (a
point with one finished seed has a mean and no spread: its std is left empty)."""

import csv
import io
import math
from pathlib import Path

from trainer.fileio import write_text


def summarise(sweep, rows):
    metric, mode = sweep["metric"], sweep["mode"]
    keys = [k for k in (sweep["search"].get("grid") or sweep["search"].get("random") or
                        sweep["search"].get("tpe") or {})]
    groups = {}
    for r in rows:
        point = tuple((k, r.get(k)) for k in keys)
        g = groups.setdefault(point, {"values": [], "done": 0, "total": 0})
        g["total"] += 1
        if r["status"] == "completed" and metric in r and r[metric] not in ("", None):
            g["values"].append(float(r[metric]))
            g["done"] += 1
    out = []
    for point, g in groups.items():
        vals = g["values"]
        mean = sum(vals) / len(vals) if vals else math.nan
        # a spread needs two seeds: one gives none (not ± 0)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals)) if len(vals) > 1 \
            else None
        out.append({**dict(point), f"{metric}_mean": mean, f"{metric}_std": std,
                    "seeds_done": g["done"], "seeds": g["total"]})
    sign = -1 if mode == "max" else 1
    out.sort(key=lambda r: (math.isnan(r[f"{metric}_mean"]), sign * r[f"{metric}_mean"]
                            if not math.isnan(r[f"{metric}_mean"]) else 0))
    return out


def write_summary(path, table):
    if not table:
        write_text(path, "", root=Path(path).parent)
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(table[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(table)
    write_text(path, buf.getvalue(), root=Path(path).parent)


def render(sweep, table, console):
    from rich.table import Table

    metric = sweep["metric"]
    t = Table(title=f"sweep {sweep.name}: {metric} ({sweep['mode']})", title_justify="left")
    cols = [k for k in table[0] if k not in (f"{metric}_mean", f"{metric}_std", "seeds_done",
                                             "seeds")] if table else []
    for c in ["rank"] + cols + [metric, "seeds"]:
        t.add_column(c)
    for i, r in enumerate(table, 1):
        m, s = r[f"{metric}_mean"], r[f"{metric}_std"]
        value = "—" if math.isnan(m) else f"{m:.4f}" if s is None else f"{m:.4f} ± {s:.4f}"
        t.add_row(str(i), *[str(r[c]) for c in cols], value, f"{r['seeds_done']}/{r['seeds']}")
    console.print(t)
