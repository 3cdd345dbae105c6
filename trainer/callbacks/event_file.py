"""One TensorBoard event file, written synchronously so its length at a checkpoint is
known to the byte (tensorboardX's SummaryWriter writes from a background thread).

The format is TensorBoard's: TFRecord framing (length, masked CRC-32C of the length,
the serialized ``Event``, its masked CRC-32C), the first event naming the file
version. The protocol buffers and summaries come from tensorboardX.
"""

import os
import socket
import struct
import time


def _histogram_bins():
    """TensorBoard's default histogram buckets (tensorboardX's ``default_bins``)."""
    v, buckets = 1e-12, []
    while v < 1e20:
        buckets.append(v)
        v *= 1.1
    return [-b for b in reversed(buckets)] + [0] + buckets


BINS = _histogram_bins()


def file_name(stamp):
    """``events.out.tfevents.<seconds>.<host>``: TensorBoard's name for an event file."""
    return f"events.out.tfevents.{int(stamp):010d}.{socket.gethostname()}"


class EventFile:
    """Append ``Event`` records to ``path``. ``length``: continue a file cut back to
    that many bytes (a resume); None starts the file afresh (replacing what a run
    killed before its first checkpoint left)."""

    def __init__(self, path, length=None):
        from tensorboardX.proto import event_pb2

        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if length is not None and path.exists() and path.stat().st_size >= length:
            self._file = open(path, "r+b")
            self._file.truncate(length)
            self._file.seek(length)
        else:
            self._file = open(path, "wb")
            self.write(event_pb2.Event(file_version="brain.Event:2"))

    def write(self, event, step=None):
        from tensorboardX.crc32c import crc32c

        def masked(data):
            x = crc32c(data) & 0xFFFFFFFF
            return struct.pack("I", (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF)

        event.wall_time = time.time()
        if step is not None:
            event.step = int(step)
        data = event.SerializeToString()
        header = struct.pack("Q", len(data))
        self._file.write(header + masked(header) + data + masked(data))

    def add_summary(self, summary, step):
        from tensorboardX.proto import event_pb2

        self.write(event_pb2.Event(summary=summary), step)

    def length(self):
        """Bytes written so far, made durable first (a checkpoint records them)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        return self._file.tell()

    def flush(self):
        self._file.flush()

    def close(self):
        self._file.close()
