"""Error types users see. Each carries the exit code documented in the README."""


class TrainerError(Exception):
    """Base of every error meant for the user: one clear message, no traceback."""

    exit_code = 1

    def __init__(self, message, *, where=None):
        super().__init__(message)
        self.message = message
        self.where = where  # "config.yaml:12:5" or None

    def __str__(self):
        return f"{self.message} ({self.where})" if self.where else self.message


class ConfigError(TrainerError):
    """Bad usage or bad config: YAML, schema, unknown names, shapes that don't fit."""

    exit_code = 2

    def __init__(self, message, *, where=None, problems=None):
        super().__init__(message, where=where)
        self.problems = problems or []  # list of (path, message, where) when many


class DataError(TrainerError):
    """Bad or missing data."""

    exit_code = 3


class GateError(TrainerError):
    """An `expect:` gate was not met."""

    exit_code = 4


class DivergedError(TrainerError):
    """Training produced NaN or Inf."""

    exit_code = 5


def out_of_memory(exc):
    """The ConfigError for a MemoryError while running: a batch, a layer's activations
    or an array the config asks for do not fit this machine — sizes the config sets."""
    from trainer.memory import human_size, memory_bytes

    return ConfigError(f"out of memory ({human_size(memory_bytes())} on this machine): "
                       f"{exc}; lower fit.batch_size (or the command's --batch-size) or "
                       f"the model's sizes")


class InterruptedRun(TrainerError):
    """Ctrl-C; a resumable checkpoint was written first."""

    exit_code = 130


class TerminatedRun(InterruptedRun):
    """SIGTERM; a resumable checkpoint was written first."""

    exit_code = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as Ctrl-C raises KeyboardInterrupt (during training: at the
    next step boundary); `trainer fit` turns it into TerminatedRun."""


class UserCodeError(ConfigError):
    """User code a config names (a loss, metric, initializer, ...) broke its contract:
    a result of the wrong shape, NaN from finite inputs. Exit 2, as a bad config."""


def suggest(name, choices):
    """' Did you mean 'X'?' for the nearest of choices, or ''."""
    import difflib

    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    if not close:
        lowered = {c.lower(): c for c in choices}
        if str(name).lower() in lowered:
            close = [lowered[str(name).lower()]]
    return f" Did you mean '{close[0]}'?" if close else ""
