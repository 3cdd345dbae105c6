"""SIGINT/SIGTERM end a run cleanly however they come: several in quick succession
leave run.json `interrupted` (never `running`), and one arriving inside a garbage-
collector or weakref callback neither prints "Exception ignored ... Traceback" nor is
lost. Each case runs in its own process (a lost signal would reach pytest itself)."""

import json
import subprocess
import sys
import textwrap

from conftest import ROOT


def python(code, *args, timeout=180):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT / "tests")


def test_a_signal_inside_a_weakref_callback_is_quiet_and_not_lost():
    r = python("""
        import os, signal, time, weakref
        from trainer.errors import Terminated
        from trainer.training.resume import sigterm_as_interrupt

        class Thing:
            pass

        try:
            with sigterm_as_interrupt():
                thing = Thing()
                # the callback runs when `thing` goes; the signal's handler raises in it
                ref = weakref.ref(thing, lambda r: os.kill(os.getpid(), signal.SIGTERM))
                del thing
                for _ in range(2000):
                    time.sleep(0.001)
            print("not stopped")
        except Terminated:
            print("stopped")
    """)
    assert r.stdout.strip() == "stopped", (r.stdout, r.stderr)
    assert r.stderr == "", r.stderr  # no "Exception ignored in ... Traceback"


def test_a_second_signal_inside_a_weakref_callback_stops_the_run(tmp_path):
    r = python("""
        import json, os, signal, sys, weakref
        from pathlib import Path
        from resume_helpers import fit
        from trainer.callbacks.base import Callback
        from trainer.errors import TerminatedRun

        class Twice(Callback):
            def on_batch_end(self, batch, logs=None):
                if self.params and batch == 2 and not hasattr(self, "done"):
                    self.done = True
                    os.kill(os.getpid(), signal.SIGTERM)  # the first: at a boundary
                    thing = type("Thing", (), {})()
                    ref = weakref.ref(thing, lambda r: os.kill(os.getpid(), signal.SIGTERM))
                    del thing  # the second, inside a weakref callback: at once
                    for _ in range(10 ** 6):
                        pass  # (the loop would stop at the boundary after this batch)

        run_dir = Path(sys.argv[1])
        try:
            fit(run_dir, callbacks=[Twice()])
        except TerminatedRun as exc:
            print("terminated:", exc)
        print(json.loads((run_dir / "run.json").read_text())["status"])
    """, tmp_path / "run")
    assert r.stdout.splitlines()[-1] == "interrupted", (r.stdout, r.stderr)
    assert "terminated" in r.stdout
    assert "Exception ignored" not in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_signals_while_the_run_records_its_end_leave_it_interrupted(tmp_path):
    # Ctrl-C twice (the second stops at once), then again and again while the run
    # writes its checkpoint and run.json: those later ones must not cut that short
    r = python("""
        import json, os, signal, sys
        from pathlib import Path
        from resume_helpers import fit
        from trainer.callbacks.base import Callback
        from trainer.errors import InterruptedRun
        from trainer.store.runs import Run

        class Twice(Callback):
            def on_batch_end(self, batch, logs=None):
                if batch == 2:
                    os.kill(os.getpid(), signal.SIGINT)
                    os.kill(os.getpid(), signal.SIGINT)

        finish = Run.finish

        def finish_under_fire(self, *args, **kwargs):
            for _ in range(3):
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGTERM)
            return finish(self, *args, **kwargs)

        Run.finish = finish_under_fire
        run_dir = Path(sys.argv[1])
        try:
            fit(run_dir, callbacks=[Twice()])
        except InterruptedRun as exc:
            print("interrupted:", exc)
        print(json.loads((run_dir / "run.json").read_text())["status"])
    """, tmp_path / "run")
    assert r.stdout.splitlines()[-1:] == ["interrupted"], (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    meta = json.loads((tmp_path / "run/run.json").read_text())
    assert meta["status"] == "interrupted" and meta["ended"]


def test_a_swallowed_signal_is_not_raised_again_while_the_run_records_its_end(tmp_path):
    # the second SIGTERM lands in a weakref callback (kept, to be raised again 5 ms
    # later); the loop stops at the boundary for the first before then, and the run
    # takes longer than that to record its end: the kept one must not cut that short
    r = python("""
        import json, os, signal, sys, time, weakref
        from pathlib import Path
        from resume_helpers import fit
        from trainer.callbacks.base import Callback
        from trainer.errors import TerminatedRun
        from trainer.store.runs import Run

        class Twice(Callback):
            def on_batch_end(self, batch, logs=None):
                if batch == 2 and not hasattr(self, "done"):
                    self.done = True
                    os.kill(os.getpid(), signal.SIGTERM)  # the first: at the boundary
                    thing = type("Thing", (), {})()
                    ref = weakref.ref(thing, lambda r: os.kill(os.getpid(), signal.SIGTERM))
                    del thing  # the second, swallowed there

        finish = Run.finish

        def slow_finish(self, *args, **kwargs):
            time.sleep(0.1)  # the kept signal's 5 ms pass meanwhile
            return finish(self, *args, **kwargs)

        Run.finish = slow_finish
        run_dir = Path(sys.argv[1])
        try:
            fit(run_dir, callbacks=[Twice()])
        except TerminatedRun as exc:
            print("terminated:", exc)
        print(json.loads((run_dir / "run.json").read_text())["status"])
    """, tmp_path / "run")
    assert "terminated" in r.stdout and "a resumable checkpoint was written" in r.stdout, \
        (r.stdout, r.stderr)
    assert r.stdout.splitlines()[-1] == "interrupted", (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
