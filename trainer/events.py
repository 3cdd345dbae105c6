"""Machine-readable events (`--log-format jsonl`): one JSON object per line.

Library code calls ``emit(name, **fields)``; nothing is written unless a sink was
opened (the CLI opens one on stdout for ``--log-format jsonl``).
"""

import json
import math
import time

_sinks = []


def open_sink(stream):
    _sinks.append(stream)


def close_sinks():
    _sinks.clear()


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


def emit(event, **fields):
    if not _sinks:
        return
    line = json.dumps({"event": event, "time": round(time.time(), 3), **_clean(fields)})
    for s in _sinks:
        s.write(line + "\n")
        s.flush()
