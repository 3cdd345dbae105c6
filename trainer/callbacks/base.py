"""The callback contract, as Keras 2: empty ``on_*`` hooks that receive ``logs``.

A callback stops training by setting ``self.model.stop_training = True``; the loop
reads the flag at the end of each batch and epoch. ``get_state``/``set_state`` carry
what a callback must remember across a resume (best value, wait counters); state is
set up in ``__init__`` (not reset in ``on_train_begin``) so a restored state survives.

Also here: what several callbacks share — the monitored value and its direction
(``Monitor``), paths kept inside the run folder (``inside_run``), the lr an
optimizer runs at (``base_lr``), and one-line notices on stderr (``say``).
"""

import math
import os
import re
import string
import sys
from pathlib import Path, PurePath

from trainer.errors import ConfigError, DataError


class Callback:
    def __init__(self):
        self.model = None
        self.run = None  # the run folder (trainer.store.runs.Run) when training from a config
        self.params = {}
        self.where = None  # "config.yaml:12:5" of the callback's entry, set by api
        self.writes_best = False  # set by api on the callback that writes best.h5

    def set_context(self, model, run, params):
        self.model = model
        self.run = run
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_batch_begin(self, batch, logs=None): pass
    def on_batch_end(self, batch, logs=None): pass
    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass

    def get_state(self):
        """JSON-able state saved in last.h5 (see trainer.store.checkpoint). A callback that
        writes a file keeps here what the file held at the checkpoint, so a resume
        continues it exactly (the loop restores it before ``on_train_begin``)."""
        return {}

    def outputs(self):
        """(argument, path relative to the run folder, is a folder) of each file or
        folder this callback writes, checked against the run's own names before
        training (trainer.runfiles)."""
        return []

    def set_state(self, state):
        pass


class CallbackList:
    """Calls each hook on every callback, in order."""

    def __init__(self, callbacks):
        self.callbacks = list(callbacks)

    def __iter__(self):
        return iter(self.callbacks)

    def set_context(self, model, run, params):
        for c in self.callbacks:
            c.set_context(model, run, params)

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args, **kwargs):
            for c in self.callbacks:
                getattr(c, hook)(*args, **kwargs)

        return call


# -- shared helpers -----------------------------------------------------------

def say(message):
    """A notice for the user (Keras prints these); stderr keeps stdout for --json."""
    print(message, file=sys.stderr, flush=True)


def base_lr(optimizer):
    """The lr a callback reads and scales: its own override, else the schedule's value
    at the current step, else the configured lr (Keras 2 ``optimizer.lr``; the time
    ``decay`` is applied on top, as in Keras)."""
    if optimizer.lr_override is not None:
        return float(optimizer.lr_override)
    if optimizer.schedule is not None:
        return float(optimizer.schedule(optimizer.iterations))
    return float(optimizer.learning_rate)


def save_best(callback):
    """checkpoints/best.h5, when training from a config and ``callback`` is the one the
    run chose to write it (``writes_best``): the run folder writes it, not the callback."""
    if callback.writes_best and callback.run is not None:
        callback.run.save_best(callback.model)


def copy_weights(model):
    """A snapshot of every layer's weights (``get_weights`` hands out live arrays)."""
    return {name: [w.copy() for w in ws] for name, ws in model.get_weights().items()}


def encode_float(x):
    """JSON-able float: non-finite values as strings."""
    return x if x is None or math.isfinite(x) else str(x)


def decode_float(x):
    return None if x is None else float(x)


def auto_mode_is_max(monitor):
    """Keras 2 'auto': maximise names with 'acc' (and 'fmeasure'); we also maximise
    auc, precision, recall and fbeta, which Keras 2 would minimise."""
    name = monitor[4:] if monitor.startswith("val_") else monitor
    return "acc" in name or name.startswith(("fmeasure", "auc", "precision", "recall",
                                             "fbeta"))


class Monitor:
    """A monitored log value, its direction (mode) and the best value so far."""

    def __init__(self, callback, monitor, mode, min_delta=0.0):
        if mode not in ("auto", "min", "max"):
            raise ConfigError(f"{callback}: mode must be auto, min or max, got {mode!r}")
        self.callback = callback
        self.name = monitor
        self.higher = mode == "max" or (mode == "auto" and auto_mode_is_max(monitor))
        self.min_delta = abs(min_delta)
        self.best = -math.inf if self.higher else math.inf

    def better(self, current, reference):
        """``current`` improves on ``reference`` by more than min_delta."""
        if self.higher:
            return current - self.min_delta > reference
        return current + self.min_delta < reference

    def value(self, logs):
        v = (logs or {}).get(self.name)
        return None if v is None else float(v)

    def check_available(self, params, where):
        """A monitor that no log will hold is a config error, named before training."""
        names = available_logs(params)
        if self.name not in names:
            hint = (" (val_ values need data.validation)"
                    if self.name.startswith("val_") else "")
            raise ConfigError(f"{self.callback} monitors '{self.name}', which is not logged"
                              f"{hint}. Available: {', '.join(names)}", where=where)

    def state(self):
        return {"best": encode_float(self.best)}

    def set_state(self, state):
        self.best = decode_float(state["best"])


def available_logs(params):
    return list(params.get("metrics") or []) + ["lr"]


def check_relative(path, what):
    """A path from the config that must stay inside the run folder."""
    p = PurePath(str(path))
    if not str(path) or p.is_absolute() or str(path).startswith("~") or ".." in p.parts:
        raise ConfigError(f"{what} must be a relative path inside the run folder (no "
                          f"absolute path, no '..'), got {str(path)!r}")
    return str(path)


def run_root(callback):
    """The folder a callback writes in: the run folder, else (library use) the cwd."""
    return Path(callback.run.path) if callback.run is not None else Path(".")


def inside_run(callback, relative, sub=None, folder=False):
    """``relative`` under the run folder (or its ``sub`` folder); the cwd without a run.
    A path that leaves the folder as written is a ConfigError; one whose real location
    leaves it (a symlink in the run folder, trainer.fileio.confined) is a DataError
    naming the callback's config line. A file (not a ``folder``) is recorded as the
    run's (``Run.record``) before it is written; one of the run's own names is a
    ConfigError."""
    from trainer.fileio import confined

    root = run_root(callback)
    out = (root / sub if sub else root) / relative
    if not Path(os.path.normpath(out.absolute())).is_relative_to(root.absolute()):
        raise ConfigError(f"{relative!r} resolves to {out}, outside the run folder",
                          where=callback.where)
    try:
        out = confined(out, root)
    except DataError as exc:
        raise DataError(exc.message, where=callback.where) from None
    if callback.run is not None:
        from trainer import runfiles

        rel = Path(sub or ".", relative).as_posix()
        runfiles.check_output(rel, type(callback).__name__, callback.where, folder)
        if not folder:
            callback.run.record(out)
    return out


def template_fields(template, what):
    """The field names of a ``str.format`` template, or a ConfigError if it is broken."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ConfigError(f"{what}: bad template {template!r}: {exc}") from None
    for f in fields:
        if not f.isidentifier():  # no {0}, {}, {a.b} or {a[0]}: names of logged values only
            raise ConfigError(f"{what}: template field {{{f}}} must be a plain name like "
                              f"{{epoch}} or {{val_loss}}, in {template!r}")
    return fields


def check_fields(fields, params, extra, what, where):
    names = ["epoch", *extra, *available_logs(params)]
    missing = [f for f in fields if f not in names]
    if missing:
        raise ConfigError(f"{what} uses {{{missing[0]}}}, which is not logged. "
                          f"Available: {', '.join(names)}", where=where)


#: a file name component may be this long (bytes) on the file systems we know
NAME_MAX = 255
#: the values a template is tried with: what each field holds when it is filled
SAMPLE_INTS = ("epoch", "batch", "size")


def check_format_specs(template, what, where):
    """(field, as written: ``{epoch:02d}``) for the fields of a file name template, once each format
    spec is known to be safe to try: a width no file name can hold
    (``{epoch:>99999999999}``, which would allocate that much) or a '/' or NUL fill
    character is a ConfigError naming the field."""
    out = []
    for _, field, spec, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        text = "{" + field + (f"!{conversion}" if conversion else "") + \
            (f":{spec}" if spec else "") + "}"
        sizes = [int(n) for n in re.findall(r"\d+", spec or "")]
        if any(n > NAME_MAX for n in sizes):
            raise ConfigError(f"{what}: {text} asks for {max(sizes)} characters, more than "
                              f"a file name may hold ({NAME_MAX})", where=where)
        if "/" in (spec or "") or "\0" in (spec or ""):
            raise ConfigError(f"{what}: {text} would write '/' or NUL into the file name "
                              f"(a fill character of its format)", where=where)
        out.append((field, text))
    return out


def check_template(template, fields, params, extra, what, where):
    """Fill a file name template with sample values before training (an int for
    ``epoch``, ``batch``, ``size``, a float for each logged value): a field it cannot
    format (``{epoch:zz}``, ``{lr:s}``), a width no file name can hold
    (``{epoch:>99999999999}``) or a '/' written by a format spec is a ConfigError
    naming the field. Returns the template filled with the samples."""
    check_fields(fields, params, extra, what, where)
    samples = {f: (1 if f in SAMPLE_INTS else 0.5) for f in fields}
    for field, text in check_format_specs(template, what, where):
        try:
            text.format(**samples)
        except (ValueError, TypeError, OverflowError, MemoryError) as exc:
            kind = "a whole number" if field in SAMPLE_INTS else "a number"
            raise ConfigError(f"{what}: {text} cannot format {field} ({kind}, e.g. "
                              f"{samples[field]!r}): {exc}", where=where) from None
    filled = template.format(**samples)
    for part in PurePath(filled).parts:
        if len(part.encode()) > NAME_MAX:
            raise ConfigError(f"{what}: {template!r} makes file names like {part[:40]!r}... "
                              f"of {len(part.encode())} bytes, more than a file name may "
                              f"hold ({NAME_MAX})", where=where)
    return filled
