"""CSVLogger: one CSV row per epoch, as Keras 2 (``epoch``, then the sorted log keys)."""

import csv
import io
import os
from typing import Annotated

from trainer.callbacks.base import Callback, check_relative, inside_run, run_root, say
from trainer.config.families import callbacks
from trainer.config.registry import Schema
from trainer.fileio import append_text, confined, write_text


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

    A resumed run continues the file exactly: the checkpoint keeps how many bytes
    the file held, and the resume cuts it back to that before writing on (rows of
    epochs written after the checkpoint are written again, once), so the file is
    byte for byte the one an uninterrupted run writes.
    """

    def __init__(self, filename: str,
                 separator: Annotated[str, Schema(minLength=1, maxLength=1)] = ",",
                 append: bool = False):
        super().__init__()
        self.filename = check_relative(filename, "CSVLogger.filename")
        self.separator = separator
        self.append = append
        self.keys = None
        self.path = None
        self.restored = None  # the file's length at the checkpoint a resume continues

    def outputs(self):
        return [("CSVLogger.filename", self.filename, False)]

    def on_train_begin(self, logs=None):
        self.path = inside_run(self, self.filename)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.restored is not None:
            self._cut_back(self.restored)
        elif self.append and self.path.exists():
            header = next(csv.reader(io.StringIO(self.path.read_text(encoding="utf-8")),
                                     delimiter=self.separator), [])
            self.keys = header[1:] if header else self.keys
        else:
            write_text(self.path, "", root=run_root(self))
        self._has_header = self.path.stat().st_size > 0

    def _cut_back(self, length):
        """The file as it was at the checkpoint: what came after is cut off."""
        size = self.path.stat().st_size if self.path.exists() else None
        if size is None or size < length:
            say(f"warning: CSVLogger: {self.path} holds {size or 0} bytes, fewer than the "
                f"{length} it held at the checkpoint; rows before the resume are missing")
            if size is None:
                write_text(self.path, "", root=run_root(self))
            return
        with open(confined(self.path, run_root(self)), "r+b") as f:
            f.truncate(length)
            f.flush()
            os.fsync(f.fileno())

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
        state = {"keys": self.keys, "filename": self.filename}
        if self.path is not None and self.path.exists():
            with open(self.path, "rb") as f:  # durable before the checkpoint names it
                os.fsync(f.fileno())
                state["bytes"] = os.fstat(f.fileno()).st_size
        return state

    def set_state(self, state):
        self.keys = state.get("keys")
        if state.get("filename") == self.filename and "bytes" in state:
            self.restored = int(state["bytes"])
