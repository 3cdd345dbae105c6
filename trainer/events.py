"""Machine-readable events (`--log-format jsonl`): one JSON object per line.

Library code calls ``emit(name, **fields)``; nothing is written unless a sink was
opened (the CLI opens one on stdout for ``--log-format jsonl``).
"""

import time

from trainer.strict_json import dumps

_sinks = []


def open_sink(stream):
    _sinks.append(stream)


def close_sinks():
    _sinks.clear()


def emit(event, **fields):
    if not _sinks:
        return
    line, _ = dumps({"event": event, "time": round(time.time(), 3), **fields})  # NaN → null
    for s in _sinks:
        s.write(line + "\n")
        s.flush()
