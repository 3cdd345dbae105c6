"""CSVLogger: one CSV row per epoch, as Keras 2 (``epoch``, then the sorted log keys)."""

import csv
import io
from typing import Annotated

from trainer.callbacks.base import Callback, check_relative, inside_run, run_root
from trainer.fileio import append_text, write_text
from trainer.config.families import callbacks
from trainer.config.registry import Schema


def _cell(value):
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return '"[%s]"' % ", ".join(str(v) for v in value)
    return value


@callbacks.register("CSVLogger")
class CSVLogger(Callback):
    """Stream epoch results to a CSV file in the run folder.

    Args:
        filename: the file, relative to the run folder (e.g. ``training.csv``).
        separator: the field separator (one character).
        append: add to an existing file (without a second header) instead of
            overwriting it.

    A resumed run rewrites the file keeping the rows of the epochs before the one it
    resumes at, so the file holds exactly one header and one row per epoch.
    """

    def __init__(self, filename: str,
                 separator: Annotated[str, Schema(minLength=1, maxLength=1)] = ",",
                 append: bool = False):
        super().__init__()
        self.filename = check_relative(filename, "CSVLogger.filename")
        self.separator = separator
        self.append = append
        self.keys = None

    def on_train_begin(self, logs=None):
        self.path = inside_run(self, self.filename)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        start = self.params.get("initial_epoch", 0)
        text = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
        if start > 0 and text:
            header, rows = self._read(text)
            while rows and _epoch_of(rows[-1]) >= start:  # epochs that will run again
                rows.pop()
            self.keys = header[1:] if header else self.keys
            self._rewrite(header, rows)
        elif self.append and text:
            header, _ = self._read(text)
            self.keys = header[1:] if header else self.keys
        else:
            write_text(self.path, "", root=run_root(self))
        self._has_header = bool(self.path.read_text(encoding="utf-8"))

    def _read(self, text):
        rows = list(csv.reader(io.StringIO(text), delimiter=self.separator))
        return (rows[0], rows[1:]) if rows else ([], [])

    def _rewrite(self, header, rows):
        buf = io.StringIO()
        w = csv.writer(buf, delimiter=self.separator, lineterminator="\n")
        for r in ([header] if header else []) + rows:
            w.writerow(r)
        write_text(self.path, buf.getvalue(), root=run_root(self))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:  # with the val_ keys even when this epoch did not validate
            self.keys = sorted(set(logs) | set(self.params.get("metrics") or []))
        row = {"epoch": epoch, **{k: _cell(logs.get(k, "NA")) for k in self.keys}}
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["epoch", *self.keys], delimiter=self.separator,
                           lineterminator="\n", extrasaction="ignore")
        if not self._has_header:
            w.writeheader()
            self._has_header = True
        w.writerow(row)
        append_text(self.path, buf.getvalue(), root=run_root(self))

    def get_state(self):
        return {"keys": self.keys}

    def set_state(self, state):
        self.keys = state.get("keys")


def _epoch_of(row):
    try:
        return int(row[0])
    except (IndexError, ValueError):
        return -1
