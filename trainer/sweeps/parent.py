"""A trial process ends with the sweep that started it.

`trainer sweep` runs each trial as a `trainer fit` child process. Were the sweep
killed (even by SIGKILL, which it cannot catch), a child would keep running as an
orphan, holding its run folder's lock while a rerun of the sweep wants that trial. So
the sweep names itself in the child's environment (``SWEEP_PID``), and the child, first
thing, asks Linux to send it SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG).

SIGTERM, not SIGKILL: `trainer fit` handles it as it handles Ctrl-C, stopping at the
next step boundary with a resumable checkpoint and ``interrupted`` in run.json, which
the rerun continues from; SIGKILL would throw the steps since the last checkpoint away.

Linux sends the signal when the *thread* that started the child ends, not only the
process: the sweep's worker threads wait for their trial (subprocess.run), so for
them the two are the same. Elsewhere than Linux this is a no-op; the rerun then waits
for the orphan's lock (runner.wait_until_free).
"""

import os
import signal
import sys

#: the environment variable naming the sweep process a trial dies with
SWEEP_PID = "TRAINER_SWEEP_PID"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def child_env(env):
    """``env`` for a trial process: it names this process as the sweep to die with."""
    return {**env, SWEEP_PID: str(os.getpid())}


def die_with_sweep():
    """In a trial process (``SWEEP_PID`` set, Linux): SIGTERM when the sweep dies. A
    sweep that died before the request was made cannot send it any more (the process
    now has another parent): then TerminatedRun at once, before anything is run."""
    value = os.environ.pop(SWEEP_PID, None)  # (not passed on to anything this starts)
    if not value or not value.isdigit() or not _ask_for_sigterm():
        return
    if os.getppid() != int(value):
        from trainer.errors import TerminatedRun

        raise TerminatedRun(f"the sweep that started this trial (pid {value}) has ended; "
                            f"nothing was run (a rerun of the sweep runs this trial)")


def _ask_for_sigterm():
    """prctl(PR_SET_PDEATHSIG, SIGTERM); whether it took effect (False off Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
    except (OSError, AttributeError):  # no libc prctl: behave as elsewhere
        return False
