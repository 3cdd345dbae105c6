"""`expect:` gates: conditions on final metrics that CI can rely on (exit code 4)."""

import operator
import re

from trainer.errors import ConfigError, GateError

_OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
        ">": operator.gt, "<": operator.lt}
#: how far a value passes a gate: positive = passed by that much, negative = missed
#: by that much, whatever the operator (== passes at 0, != by the distance)
_MARGINS = {">=": lambda v, t: v - t, ">": lambda v, t: v - t,
            "<=": lambda v, t: t - v, "<": lambda v, t: t - v,
            "==": lambda v, t: -abs(v - t), "!=": lambda v, t: abs(v - t)}
_PATTERN = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*$")


def parse(condition, where=None):
    """'>= 0.9' → ('>=', 0.9)."""
    m = _PATTERN.match(str(condition))
    if not m:
        raise ConfigError(f"expect: {condition!r} is not a comparison like '>= 0.9'",
                          where=where)
    return m.group(1), float(m.group(2))


def parse_cli(items):
    """--expect 'val_accuracy>=0.9' (repeatable) → {metric: condition}."""
    out = {}
    for item in items:
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*((?:>=|<=|==|!=|>|<).*)$", item)
        if not m:
            raise ConfigError(f"--expect {item!r}: expected METRIC OP VALUE, "
                              f"e.g. 'val_accuracy>=0.9'")
        parse(m.group(2))
        out[m.group(1)] = m.group(2).strip()
    return out


def check_logged(expect, names, cfg):
    """ConfigError, before training, for a gate on a name the run will never log (one
    problem per gate, with the nearest name); a gate of the config names its line, one
    given with --expect the option."""
    from trainer.config.loader import _summarise
    from trainer.config.registry import suggest

    problems = []
    for name in expect or {}:
        if name in names:
            continue
        where = cfg.where(("expect", name)) if name in (cfg.get("expect") or {}) \
            else f"--expect {name}{expect[name]}"
        problems.append((f"expect.{name}", f"'{name}' is never logged.{suggest(name, names)} "
                                           f"Logged: {', '.join(names)}", where))
    if problems:
        raise ConfigError(_summarise(problems), problems=problems)


def check(expect, metrics):
    """Evaluate every gate. Returns a list of result dicts; raises GateError listing
    every gate not met (with the margin), after all were checked."""
    results = []
    for name, condition in (expect or {}).items():
        op, target = parse(condition)
        condition = f"{op} {target:g}"
        if name not in metrics:
            results.append({"metric": name, "condition": condition, "value": None,
                            "passed": False,
                            "reason": f"not logged (logged: {', '.join(sorted(metrics))})"})
            continue
        value = float(metrics[name])
        passed = bool(_OPS[op](value, target))
        results.append({"metric": name, "condition": condition, "value": value,
                        "passed": passed, "margin": _MARGINS[op](value, target)})
    failed = [r for r in results if not r["passed"]]
    if failed:
        lines = []
        for r in failed:
            if r["value"] is None:
                lines.append(f"{r['metric']} {r['condition']}: {r['reason']}")
            else:
                lines.append(f"{r['metric']} {r['condition']}: got {r['value']:.6g} "
                             f"(off by {abs(r['margin']):.3g})")
        err = GateError("expect gate not met: " + "; ".join(lines))
        err.results = results
        raise err
    return results


def evaluate_and_report(expect, metrics, run_path=None):
    """Check the gates and, for a run, write metrics.json (final metrics and every gate's
    result) for CI artifacts. Raises GateError when a gate is not met."""
    import json
    import math

    from trainer.fileio import write_text
    from trainer.runfiles import METRICS

    try:
        results, error = check(expect, metrics), None
    except GateError as exc:
        results, error = exc.results, exc
    if run_path is not None:
        clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v))
                 for k, v in metrics.items()}
        report = {"metrics": clean, "gates": results, "passed": error is None}
        write_text(f"{run_path}/{METRICS}", json.dumps(report, indent=2) + "\n",
                   root=run_path)
    if error is not None:
        raise error
    return results


def logged_names(cfg, model):
    """What a run of ``model`` logs: its metrics, their ``val_`` versions when the config
    validates, and ``lr``."""
    names = model.metric_names()
    if cfg["data"].get("validation") is not None:
        names = names + [f"val_{n}" for n in names]
    return names + ["lr"]
