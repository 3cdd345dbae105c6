"""Scratch arrays reused from step to step.

Arrays above glibc's mmap threshold (32 MiB at most) are fresh pages on every
allocation, and the page faults cost more than the copy that fills them (im2col of
the classic CNN's second layer: ~25 ms into a reused buffer, ~80 ms into a new one).
A layer takes a buffer in forward and gives it back when its backward is done with
it; a buffer still lent out (a shared layer called twice in one step) is never
handed out again, a fresh one is made instead.
"""

import numpy as np


class Workspace:
    def __init__(self):
        self._free = {}

    def take(self, key, shape, dtype):
        buf = self._free.pop(key, None)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
            buf = np.empty(shape, dtype)
        return buf

    def give(self, key, buf):
        self._free[key] = buf
