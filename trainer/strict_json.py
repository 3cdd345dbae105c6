"""JSON that strict parsers accept, for every JSON trainer prints (``--json`` results,
``--log-format jsonl`` events).

Python's ``json.dumps`` writes NaN and ±Inf as ``NaN``/``Infinity``, which are not
JSON: ``json.loads(text, parse_constant=...)``, JavaScript's ``JSON.parse`` and jq
reject them. A diverged run (or a model whose outputs overflow) has such values, so
here they become ``null``, and the caller is told which keys were nulled and why.
"""

import json
import math


def plain(value, found=None, path=""):
    """``value`` with NumPy scalars and arrays as Python values and NaN/±Inf as None;
    each replaced value's key path (``metrics.loss``, ``[2].val_loss``) and its text
    (``NaN``, ``Infinity``) appended to ``found``."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()  # NumPy scalar or array
    if isinstance(value, float) and not math.isfinite(value):
        if found is not None:
            found.append((path or "(top)", json.dumps(value)))
        return None
    if isinstance(value, dict):
        return {k: plain(v, found, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, found, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def dumps(value, **kwargs):
    """(strict JSON text, [(key path, NaN/Infinity/-Infinity)] of the values nulled)."""
    found = []
    text = json.dumps(plain(value, found), allow_nan=False, **kwargs)
    return text, found


def note(found):
    """The sentence saying why values are null, or None when none was nulled."""
    if not found:
        return None
    what = ", ".join(f"{path} is {text}" for path, text in found)
    return (f"{what}: not a JSON number, written as null (NaN/Inf come from a diverged "
            f"run or a model whose outputs overflow)")


def report(value, **kwargs):
    """(strict JSON text of ``value``, note or None). A mapping gets the note under
    ``"note"`` too, so a reader of the JSON alone learns why a value is null."""
    text, found = dumps(value, **kwargs)
    why = note(found)
    if why is not None and isinstance(value, dict) and "note" not in value:
        text, _ = dumps({**value, "note": why}, **kwargs)
    return text, why
