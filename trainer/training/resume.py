"""What makes a stopped run continue exactly: which checkpoint to continue from,
which config changes a resume accepts, and signals that stop at a step boundary.

A resumed run gives the same weights, history and checkpoints as one that never
stopped (same machine, same versions, same thread count): ``checkpoints/last.h5``
holds the position (epoch, step), optimizer slots, the epoch's running sums, every
random stream and each callback's state (see ``trainer.training.loop.Loop.get_state``).
"""

import contextlib
import hashlib
import json
import signal
import sys
import threading

from trainer.errors import ConfigError

#: Keys whose change does not change the math: a resume accepts them.
SAFE_KEYS = ("name", "fit.epochs", "fit.verbose", "fit.checkpoint_every", "expect")
#: Callbacks that only report; adding, removing or changing them is safe.
SAFE_CALLBACKS = ("ProgbarLogger", "CSVLogger", "TensorBoard")


# -- config ----------------------------------------------------------------------------
def _plain(value):
    """JSON-like copy (Config mappings, tuples → dicts, lists)."""
    return json.loads(json.dumps(value, default=str))


def _callback_name(spec):
    from trainer.config.families import callbacks

    name = next(iter(spec)) if isinstance(spec, dict) and len(spec) == 1 else spec
    if not isinstance(name, str):
        return None
    try:
        return callbacks.lookup(name).__name__
    except (KeyError, ConfigError):
        return name


def _is_safe(path):
    return any(path == k or path.startswith(k + ".") for k in SAFE_KEYS)


def _math_part(resolved):
    """The config without the keys a resume may change."""
    out = _plain(resolved)
    for key in SAFE_KEYS:
        *parents, last = key.split(".")
        node = out
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    out["callbacks"] = [c for c in out.get("callbacks") or []
                        if _callback_name(c) not in SAFE_CALLBACKS]
    return out


def config_hash(resolved):
    """SHA-256 of the resolved config, safe keys left out: stored in each checkpoint."""
    text = json.dumps(_math_part(resolved), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def differences(old, new, path=""):
    """Key paths where two plain configs differ (``fit.batch_size``, ``model.layers[2]``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in list(old) + [k for k in new if k not in old]:
            sub = f"{path}.{k}" if path else str(k)
            if k not in old or k not in new:
                out.append(sub)
            else:
                out += differences(old[k], new[k], sub)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new))
                for d in differences(a, b, f"{path}[{i}]")]
    return [] if old == new else [path or "(the whole config)"]


def unsafe_differences(stored, resolved):
    """The differences between a run's config and a new one that a resume refuses."""
    old, new = _math_part(stored), _math_part(resolved)
    return [d for d in differences(old, new) if not _is_safe(d)]


# -- the checkpoint to continue from ----------------------------------------------------
class ResumePoint:
    """The checkpoint a resume continues from, its state, and what was checked."""

    def __init__(self, path, state, arrays, changed, forced):
        self.path = path
        self.state = state
        self.arrays = arrays
        self.changed = changed
        self.forced = forced

    @classmethod
    def find(cls, run, resolved, force=False, warn=None):
        """Check ``resolved`` against the run and pick its newest valid checkpoint
        (a damaged last.h5 is set aside as last.corrupt.h5; last.prev.h5 is used). A
        run that never wrote one (killed in its first seconds) starts again from the
        beginning: ``path`` and ``state`` are None."""
        import yaml

        from trainer.store import checkpoint

        warn = warn or _warn
        config_file = run.require().path / "config.yaml"
        stored = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        changed = differences(_plain(stored), _plain(resolved))
        unsafe = unsafe_differences(stored, resolved)
        if unsafe and not force:
            raise ConfigError(
                f"the config differs from the one {run.path} was trained with in keys a "
                f"resume cannot change: {', '.join(unsafe)}. Only {', '.join(SAFE_KEYS)} "
                f"and the callbacks {', '.join(SAFE_CALLBACKS)} may change; --force "
                f"resumes anyway (the result then differs from an uninterrupted run)")
        if not any(p.exists() for p in (run.last, run.previous, run.corrupt)):
            warn(f"{run.path} has no checkpoint (it stopped before writing its first): "
                 f"starting it again from the beginning")
            return cls(None, None, None, changed, forced=bool(unsafe))
        path, problems = checkpoint.newest_valid([run.last, run.previous])
        for p in problems:
            warn(f"{p}; resuming from {path.name}")
        if problems and run.last.exists() and path != run.last:
            run.last.replace(run.corrupt)
        state, arrays = checkpoint.read_state(path)
        other_config = state.get("config_hash") != config_hash(resolved)
        if other_config and not force:
            raise ConfigError(f"{path} was written for a different config than "
                              f"{config_file} (config hash differs); --force resumes anyway")
        return cls(path, state, arrays, changed, forced=bool(unsafe or other_config))

    def summary(self):
        """What run.json records of this resume."""
        loop = self.state["loop"] if self.state else {"epoch": 0, "step": 0}
        return {"checkpoint": self.path.name if self.path else None, "epoch": loop["epoch"],
                "step": loop["step"], "changed": self.changed, "forced": self.forced}


def _warn(message):
    print(f"warning: {message}", file=sys.stderr, flush=True)


# -- signals ----------------------------------------------------------------------------
class SignalGate:
    """SIGINT and SIGTERM while `trainer fit` runs (main thread only).

    Before and after training a signal raises KeyboardInterrupt (SIGINT) or Terminated
    (SIGTERM) at once; while the loop trains (``training``) the first one asks it to
    stop at the next step boundary and a second one stops at once. Once one of them
    has raised, later signals are ignored: the run is on its way out, writing its
    checkpoint and ``interrupted`` into run.json, which a flood of signals must not
    cut short.

    A signal that arrives inside a garbage-collector or weakref callback raises where
    Python cannot pass the exception on: it would print "Exception ignored in ...
    Traceback ... Terminated" and be lost. ``unraisable`` (the ``sys.unraisablehook``
    meanwhile) keeps it quiet and raises it again a moment later (SIGALRM), outside
    the callback — unless the loop has stopped at a boundary for an earlier signal
    meanwhile: that stop is the one the run records, and a second raise would cut the
    recording short.
    """

    RETRY = 0.005  # seconds until a swallowed interrupt is raised again

    def __init__(self):
        self.loop = None
        self.stopping = False
        self.lost = None  # the interrupt a callback swallowed, to raise again

    def handler(self, signum, frame):
        if self.stopping:
            return  # already stopping: let the run record how it ended
        if self.loop is not None and self.loop.pending_signal is None:
            self.loop.pending_signal = signum  # stop at the next step boundary
            return
        self.stopping = True
        raise _interrupt(signum)

    def unraisable(self, previous):
        def hook(unraisable):
            exc = unraisable.exc_value
            if isinstance(exc, KeyboardInterrupt):
                self.lost = type(exc)
                signal.setitimer(signal.ITIMER_REAL, self.RETRY)
                return
            previous(unraisable)
        return hook

    def raise_lost(self, signum, frame):
        lost, self.lost = self.lost, None
        if lost is not None:
            self.stopping = True
            raise lost()

    @contextlib.contextmanager
    def training(self, loop):
        """While ``loop`` trains: a first signal stops it at a step boundary."""
        self.loop = loop
        try:
            yield
        except KeyboardInterrupt:
            self.stopping = True  # (raised at a boundary by the loop itself)
            self.lost = None  # a swallowed one waiting to be raised again: this is it
            raise
        finally:
            self.loop = None


def _interrupt(signum):
    from trainer.errors import Terminated

    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


_gates = []


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Handle SIGINT and SIGTERM with a SignalGate (the one already installed, if any):
    SIGTERM raises Terminated as SIGINT raises KeyboardInterrupt, so `trainer fit` ends
    the same way (run.json updated, exit 130/143) whenever either comes."""
    if _gates or threading.current_thread() is not threading.main_thread():
        yield _gates[-1] if _gates else None
        return
    gate = SignalGate()
    previous = {s: signal.signal(s, gate.handler) for s in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, gate.raise_lost)
    previous_hook, sys.unraisablehook = sys.unraisablehook, gate.unraisable(sys.unraisablehook)
    _gates.append(gate)
    try:
        yield gate
    finally:
        _gates.remove(gate)
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.unraisablehook = previous_hook
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def stop_at_boundary(loop):
    """While ``loop`` trains: the first SIGINT/SIGTERM asks it to stop at the next step
    boundary (where a resumable checkpoint is written); a second one stops at once,
    keeping the last checkpoint written. (Within ``sigterm_as_interrupt``.)"""
    gate = _gates[-1] if _gates else None
    if gate is None:
        yield
        return
    with gate.training(loop):
        yield
