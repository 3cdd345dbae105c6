"""A local HTTP server for the fetch tests: serves byte strings by path, honours
``Range: bytes=N-`` with 206, and records each request's path and Range header."""

import hashlib
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Files:
    def __init__(self, files=None):
        self.files = dict(files or {})
        self.requests = []  # (path, range header or None)
        self.ranges = True


def _handler(files):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            rng = self.headers.get("Range")
            files.requests.append((self.path, rng))
            body = files.files.get(self.path.split("?")[0])
            if body is None:
                self.send_error(404)
                return
            start = 0
            if rng and files.ranges:
                start = int(rng.split("=")[1].split("-")[0])
                if start >= len(body):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            self.wfile.write(body[start:])

        def log_message(self, *args):
            pass

    return Handler


@contextmanager
def serve(files):
    """``files`` (a Files) served on 127.0.0.1; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(files))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def closed_port_url():
    """A URL on a local port nothing listens on (connection refused: 'offline')."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"
