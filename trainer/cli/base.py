"""What the commands share: the one exit path (``handle_errors``) and common options.

Exit codes: 0 success · 1 internal error · 2 bad usage or config · 3 bad or missing
data · 4 an `expect:` gate not met · 5 training diverged · 6 a run file could not be
written · 130 interrupted (Ctrl-C) · 143 terminated (SIGTERM).
"""

import functools
import sys

import click


class Exit(Exception):
    """The command has printed its own report (validate's problems, sweep's table):
    leave with ``code`` through the one exit path, adding nothing."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


def echo_json(value, **kwargs):
    """The one way a command prints JSON: strict (NaN/Inf written as null, with a note
    in the object and on stderr saying which and why; trainer.strict_json)."""
    from trainer.strict_json import report

    text, why = report(value, **kwargs)
    if why is not None:
        click.echo(f"note: {why}", err=True)
    click.echo(text)


def json_result():
    """The one JSON object a command prints with --json: the command fills it as it
    goes; on an error it is printed with ``error`` and ``exit_code`` added."""
    return click.get_current_context().meta.setdefault("trainer.json_result", {})


def _emit_error(message, code, as_json):
    """The one error report: the command's JSON object with the error inside it
    (--json), an ``error`` event (--log-format jsonl) and ``error: ...`` on stderr."""
    from trainer import events

    if as_json:
        echo_json({**json_result(), "error": message, "exit_code": code})
    events.emit("error", message=message, exit_code=code)
    click.echo(f"error: {message}", err=True)


def handle_errors(fn):
    """One exit path: user errors print one message; internal errors a short note
    (the traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        debug = (ctx.find_root().params or {}).get("debug", False)
        as_json = kwargs.get("as_json", False)
        from trainer.errors import TrainerError, out_of_memory

        try:
            try:
                return fn(*args, **kwargs)
            except Exit as exc:
                sys.exit(exc.code)
            except MemoryError as exc:  # evaluate/predict/sweep as fit (api): exit 2
                if debug:
                    _debug_raise(exc, 2)
                raise out_of_memory(exc) from None
        except TrainerError as exc:
            if debug:
                _debug_raise(exc, exc.exit_code)
            from trainer.errors import InterruptedRun

            if isinstance(exc, InterruptedRun):
                _ignore_signals()
            _exit_error(str(exc), exc.exit_code, as_json, getattr(exc, "agreed", False))
        except KeyboardInterrupt as exc:
            if debug:
                _debug_raise(exc, 130)
            from trainer.errors import Terminated

            code = 143 if isinstance(exc, Terminated) else 130
            _ignore_signals()
            _exit_error("terminated" if code == 143 else "interrupted", code, as_json, False)
        except Exception as exc:  # noqa: BLE001 - the one place internal errors surface
            if debug:
                _debug_raise(exc, 1)
            from trainer.config.usercode import blame

            message = blame(exc)  # the user's own layer or callback failed: exit 2
            if message is not None:
                _exit_error(f"{message} (run with --debug for the traceback)", 2, as_json,
                            False)
            _exit_error(f"internal error: {type(exc).__name__}: {exc} "
                        f"(run with --debug for the traceback)", 1, as_json, False)

    return wrapper


def _debug_raise(exc, code):
    """``--debug``: let the exception through with its traceback. Under MPI an error
    only this rank raised would leave the others waiting in a collective (and this
    rank's exit waiting for them): print the traceback, then stop every rank."""
    from trainer.distributed.world import active

    world = active()
    if world is None or getattr(exc, "agreed", False):
        raise exc
    import traceback

    traceback.print_exc()
    print(f"MPI rank {world.rank} of {world.size} (pid {_pid()}): stopping every rank",
          file=sys.stderr, flush=True)
    world.abort(code)


def _exit_error(message, code, as_json, agreed):
    """Report and exit. Under MPI (trainer.distributed): an error every rank raised
    alike (``agreed``) is reported by rank 0, the others exit with its code quietly;
    any other error is one rank's: reported with the rank named, and every rank is
    stopped (MPI_Abort) so none waits for it in a collective."""
    from trainer.distributed.world import active

    world = active()
    if world is None:
        _emit_error(message, code, as_json)
        sys.exit(code)
    if agreed:
        if world.is_root:
            _emit_error(message, code, as_json)
        sys.exit(code)
    _emit_error(f"MPI rank {world.rank} of {world.size} (pid {_pid()}): {message}; "
                f"stopping every rank", code, as_json)
    world.abort(code)


def _pid():
    import os

    return os.getpid()


def _ignore_signals():
    """From here the command only exits: the run has recorded how it ended, and more
    SIGINT/SIGTERM (a flood) must not turn exit 130/143 into a traceback."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)


def joined_world():
    """Under MPI with more than one rank (mpiexec, srun): the World, joined now; the
    ranks other than 0 print nothing on stdout (rank 0 reports). None otherwise."""
    import os

    from trainer.distributed.world import current

    world = current()
    if world is not None and not world.is_root:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the process's life
    return world


def on_rank_0(fn):
    """A command that prints or writes and does not train (validate, summary, export,
    predict, ...): under MPI rank 0 runs it as one process would (its errors are its
    own: no other rank waits for it) and the other ranks exit 0 at once, silently, so
    the output appears and the files are written once."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        world = joined_world()
        if world is None:
            return fn(*args, **kwargs)
        if not world.is_root:
            return None
        from trainer.distributed.world import leave

        leave()
        return fn(*args, **kwargs)

    wrapper.runs_on_rank_0 = True
    return wrapper


def runs_on_rank_0(command):
    """Whether a click command (or every command of a group) is ``on_rank_0``."""
    if isinstance(command, click.Group):
        return bool(command.commands) and all(map(runs_on_rank_0, command.commands.values()))
    return getattr(command.callback, "runs_on_rank_0", False)


def others_leave(command):
    """Before ``command``'s arguments are parsed: under MPI the ranks other than 0 exit 0
    if it runs on rank 0 alone, so even a usage error is printed once."""
    from trainer.distributed.world import launched_size, reset
    from trainer.errors import TrainerError

    if launched_size() < 2 or command is None or not runs_on_rank_0(command):
        return
    try:
        world = joined_world()
    except TrainerError:  # no mpi4py: the command reports it through its exit path
        reset()
        return
    if world is not None and not world.is_root:
        click.get_current_context().exit(0)


def gate_items(cfg, cli_expect):
    from trainer.app import gates

    expect = dict(cfg.get("expect") or {})
    expect.update(gates.parse_cli(cli_expect))
    return expect


def json_output(as_json, log_format):
    """Machine output owns stdout: human output moves to stderr."""
    from trainer import console, events

    console.use_stderr(as_json or log_format == "jsonl")
    if log_format == "jsonl":
        events.open_sink(sys.stdout)


EXPECT_HELP = "A gate like 'val_accuracy>=0.9' (repeatable); not met → exit 4."
LOG_FORMAT = click.option("--log-format", type=click.Choice(["text", "jsonl"]), default="text",
                          help="jsonl: stream events as JSON lines on stdout.")
