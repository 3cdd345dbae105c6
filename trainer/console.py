"""Where human output goes: stdout, or stderr when stdout carries machine output (--json)."""

import sys

_state = {"stderr": False, "console": None}


def use_stderr(flag=True):
    _state["stderr"] = bool(flag)
    _state["console"] = None


def stream():
    """sys.stderr or sys.stdout as they are now (looked up on each call: a caller such
    as a test runner may swap them between commands)."""
    return sys.stderr if _state["stderr"] else sys.stdout


def console():
    from rich.console import Console

    s = stream()
    if _state["console"] is None or _state["console"].file is not s:
        _state["console"] = Console(file=s, highlight=False, soft_wrap=True)
    return _state["console"]


def is_terminal():
    s = stream()
    return hasattr(s, "isatty") and s.isatty()


def fmt(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)
