"""Agreement between ranks before and while a run starts: the same config and code on
every rank, and one rank's failure made every rank's.

An error raised here is *agreed*: every rank raises it at the same point (each with
the failing rank named), so no rank is left waiting in a collective; the command-line
exit path lets rank 0 report it and the others exit with the same code quietly.
"""

import hashlib
from pathlib import Path

from trainer.errors import ConfigError, TrainerError


def agreed(exc):
    """Mark ``exc`` as raised on every rank alike (see module docstring)."""
    exc.agreed = True
    return exc


def code_version():
    """A hash of the trainer package's Python sources: ranks that run other code (a
    node with another checkout or version) are refused."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def check_same(world, what, value):
    """Every rank's ``value`` must equal rank 0's; else ConfigError on every rank
    naming the ranks that differ (exit 2)."""
    values = world.allgather(value)
    differ = [r for r, v in enumerate(values) if v != values[0]]
    if differ:
        ranks = ", ".join(str(r) for r in differ)
        raise agreed(ConfigError(
            f"MPI rank{'s' if len(differ) > 1 else ''} {ranks} disagree{'s' if len(differ) == 1 else ''} "
            f"with rank 0 on the {what} (hash {values[differ[0]]} against {values[0]}); "
            f"every rank must run the same trainer version on the same config and data "
            f"files"))


def together(world, fn):
    """Run ``fn()`` on every rank; if it raised a TrainerError on any rank, every rank
    raises that error (the lowest failing rank's: its class, so its exit code, and
    its message naming the rank). Returns ``fn()``'s value."""
    value, failure = _attempt(fn)
    _raise_first(world, world.allgather(failure))
    return value


def gathered(world, fn):
    """Run ``fn()`` on every rank and return every rank's value, in rank order; a
    TrainerError on any rank is every rank's, as in ``together``."""
    value, failure = _attempt(fn)
    answers = world.allgather((value, failure))
    _raise_first(world, [f for _, f in answers])
    return [v for v, _ in answers]


def _attempt(fn):
    """(value, None) or (None, the failure to share). An error ``fn`` raised already
    agreed (from a collective inside it) passes through: every rank raised it at the
    same point, so none waits for the others here."""
    try:
        return fn(), None
    except TrainerError as exc:
        if getattr(exc, "agreed", False):
            raise
        return None, (type(exc).__name__, exc.exit_code, str(exc))


def _raise_first(world, failures):
    for rank, failure in enumerate(failures):
        if failure is None:
            continue
        name, code, message = failure
        error = _error_class(name)(f"MPI rank {rank} of {world.size}: {message}")
        error.exit_code = code
        raise agreed(error)


def _error_class(name):
    import trainer.errors as errors

    cls = getattr(errors, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, TrainerError) else TrainerError
