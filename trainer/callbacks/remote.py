"""RemoteMonitor: POST each epoch's logs to a server, as Keras 2 (with the stdlib)."""

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Annotated, Optional

import numpy as np

from trainer.callbacks.base import Callback, say
from trainer.errors import ConfigError
from trainer.config.families import callbacks
from trainer.config.registry import Schema


@callbacks.register("RemoteMonitor")
class RemoteMonitor(Callback):
    """Send ``{"epoch": N, <log>: <value>, ...}`` to ``root + path`` after every epoch.

    Args:
        root: the server, ``http://`` or ``https://``.
        path: appended to ``root``.
        field: with ``send_as_json: false`` (Keras's default) the logs travel as a
            form field of this name holding their JSON (``data={"epoch": 0, ...}``).
        headers: extra HTTP headers.
        send_as_json: send the logs as the JSON body (``application/json``) instead.
        timeout: seconds to wait for the server (ours; Keras waited forever).

    A server that is down, slow or answers with an error costs one warning (the
    first time) and training goes on.
    """

    def __init__(self, root: str = "http://localhost:9000", path: str = "/publish/epoch/end/",
                 field: str = "data", headers: Optional[dict[str, str]] = None,
                 send_as_json: bool = False,
                 timeout: Annotated[float, Schema(exclusiveMinimum=0)] = 5.0):
        super().__init__()
        if urllib.parse.urlsplit(root).scheme not in ("http", "https"):
            raise ConfigError(f"RemoteMonitor.root must be an http:// or https:// URL, "
                              f"got {root!r}")
        self.root = root
        self.path = path
        self.field = field
        self.headers = headers
        self.send_as_json = send_as_json
        self.timeout = timeout
        self.failures = 0

    def on_epoch_end(self, epoch, logs=None):
        send = {"epoch": epoch}
        for k, v in (logs or {}).items():
            send[k] = v.item() if isinstance(v, (np.ndarray, np.generic)) else v
        headers = dict(self.headers or {})
        if self.send_as_json:
            body = json.dumps(send).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        else:
            body = urllib.parse.urlencode({self.field: json.dumps(send)}).encode("ascii")
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        request = urllib.request.Request(self.root + self.path, data=body, headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self.failures += 1
            if self.failures == 1:
                reason = getattr(exc, "reason", exc)
                say(f"warning: RemoteMonitor could not reach {self.root + self.path} "
                    f"({reason}); training goes on and later failures are not reported")
