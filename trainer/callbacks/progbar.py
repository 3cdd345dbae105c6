"""ProgbarLogger: a live progress bar on a terminal, one plain line per epoch elsewhere.

On a terminal every line is laid out for its width: a logged value is never cut
(``val_accuracy: 0.90…``). When the line is too long the bar goes first, then the
values wrap onto the next lines, each ``name: value`` kept whole.
"""

import time
from typing import Literal

from trainer import console
from trainer.callbacks.base import Callback
from trainer.config.families import callbacks

BAR_MIN, BAR_MAX = 10, 40


def clock(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def layout(head, items, width, fraction=None, tail=""):
    """The lines of one epoch's display, each at most ``width`` characters unless a
    single item is longer: ``head`` ("Epoch 3/30"), a bar of ``fraction`` done (None:
    no bar) when it fits, ``tail`` ("34/34 0:00:01"), then the ``items``
    ("loss: 0.1234"), each kept whole. A bar is the placeholder ``\0<width>\0`` in the
    text, drawn by ``render``."""
    first = f"{head} {tail}" if tail else head
    values = " - ".join(items)
    one_line = f"{first} - {values}" if items else first
    if fraction is not None and width - len(one_line) - 1 >= BAR_MIN:
        return [_with_bar(head, min(width - len(one_line) - 1, BAR_MAX), tail, values)]
    if len(one_line) <= width:
        return [one_line]
    if fraction is not None and width - len(first) - 1 >= BAR_MIN:
        first = _with_bar(head, min(width - len(first) - 1, BAR_MAX), tail, "")
    lines, line = [first], ""
    for item in items:
        if line and len(line) + 3 + len(item) > width:
            lines.append(line)
            line = ""
        line = f"{line} - {item}" if line else f"  {item}"
    if line:
        lines.append(line)
    return lines


def _with_bar(head, bar_width, tail, values):
    text = " ".join(p for p in (head, f"\0{bar_width}\0", tail) if p)
    return f"{text} - {values}" if values else text


def render(lines, fraction):
    """A rich Text of the lines, the bar placeholder drawn ``fraction`` full."""
    import re

    from rich.text import Text

    out = Text()
    for i, line in enumerate(lines):
        if i:
            out.append("\n")
        m = re.search("\0(\\d+)\0", line)
        if m is None:
            out.append(line)
            continue
        width = int(m.group(1))
        done = round(width * min(max(fraction or 0.0, 0.0), 1.0))
        out.append(line[:m.start()])
        out.append("━" * done, style="bar.complete")
        out.append("━" * (width - done), style="bar.back")
        out.append(line[m.end():])
    return out


def _items(logs, skip=("batch", "size")):
    return [f"{k}: {v:.4f}" for k, v in (logs or {}).items()
            if k not in skip and isinstance(v, float)]


@callbacks.register("ProgbarLogger")
class ProgbarLogger(Callback):
    """verbose 0: silent; 1: a live bar per epoch with running loss and metrics;
    2: one line per epoch. ``auto`` is 1 on a terminal and 2 otherwise (CI logs).
    On a terminal no logged number is cut: the bar is dropped first, then the values
    wrap, each whole."""

    def __init__(self, verbose: Literal[0, 1, 2, "auto"] = "auto"):
        super().__init__()
        self.verbose = verbose

    def on_train_begin(self, logs=None):
        v = self.verbose
        self._mode = (1 if console.is_terminal() else 2) if v == "auto" else v
        self._live = None

    def _head(self, epoch):
        return f"Epoch {epoch + 1}/{self.params.get('epochs')}"

    def _tail(self, done):
        steps = self.params.get("steps")
        count = f"{done}/{steps} " if steps else ""
        return count + clock(time.perf_counter() - self._start)

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._epoch = epoch
        if self._mode == 1:
            from rich.live import Live

            self._live = Live(console=console.console(), transient=True,
                              auto_refresh=False)
            self._live.start()
            self._shown = 0.0
            self._show(epoch, 0, [], 0.0)

    def _show(self, epoch, done, items, fraction):
        out = console.console()
        lines = layout(self._head(epoch), items, out.width, fraction, self._tail(done))
        self._live.update(render(lines, fraction), refresh=True)

    def on_batch_end(self, batch, logs=None):
        if self._live is not None:
            now = time.perf_counter()
            if now - self._shown < 0.1:  # at most 10 redraws a second, as rich's
                return
            self._shown = now
            steps = self.params.get("steps")
            self._show(self._epoch, batch + 1, _items(logs),
                       (batch + 1) / steps if steps else None)

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self._start
        items = _items(logs, skip=("batch", "size", "lr"))
        if self._live is not None:
            self._live.stop()
            self._live = None
            out = console.console()
            steps = self.params.get("steps")
            lines = layout(self._head(epoch), items, out.width, 1.0 if steps else None,
                           self._tail(steps))
            out.print(render(lines, 1.0), soft_wrap=True)
        elif self._mode == 2:
            head = f"{self._head(epoch)} - {elapsed:.1f}s"
            # a terminal's width keeps every value whole; a log file gets one line
            width = console.console().width if console.is_terminal() else 10**9
            print("\n".join(layout(head, items, width)), file=console.stream(), flush=True)

    def on_train_end(self, logs=None):
        if self._live is not None:
            self._live.stop()
            self._live = None
