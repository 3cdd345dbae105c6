import json
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cbhelp import fit
from trainer.callbacks.remote import RemoteMonitor
from trainer.errors import ConfigError


class Recorder(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, dict(self.headers), body))
        time.sleep(self.server.delay)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    srv.received, srv.delay = [], 0.0
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def root(srv):
    return f"http://127.0.0.1:{srv.server_address[1]}"


def test_posts_logs_as_a_form_field_like_keras(tmp_path, server):
    _, logs = fit(tmp_path, [{"RemoteMonitor": {"root": root(server), "headers": {"X-Run": "a"}}}],
                  fit={"epochs": 2})
    assert len(server.received) == 2
    path, headers, body = server.received[-1]
    assert path == "/publish/epoch/end/" and headers["X-Run"] == "a"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    sent = json.loads(urllib.parse.parse_qs(body.decode())["data"][0])
    assert sent == {"epoch": 1, **logs}


def test_send_as_json(tmp_path, server):
    fit(tmp_path, [{"RemoteMonitor": {"root": root(server), "path": "/x", "field": "ignored",
                                      "send_as_json": True}}], fit={"epochs": 1})
    path, headers, body = server.received[0]
    assert path == "/x" and headers["Content-Type"] == "application/json"
    sent = json.loads(body)
    assert sent["epoch"] == 0 and {"loss", "val_loss", "lr"} <= set(sent)


def test_a_server_that_is_down_gives_one_warning(tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run, _ = fit(tmp_path, [{"RemoteMonitor": {"root": f"http://127.0.0.1:{port}"}}],
                 fit={"epochs": 3})
    err = capsys.readouterr().err
    assert err.count("RemoteMonitor could not reach") == 1
    assert (run.path / "history.csv").read_text().count("\n") == 4  # header + 3 epochs


def test_a_slow_server_times_out_with_one_warning(tmp_path, server, capsys):
    server.delay = 1.0
    run, _ = fit(tmp_path, [{"RemoteMonitor": {"root": root(server), "timeout": 0.2}}],
                 fit={"epochs": 2})
    assert capsys.readouterr().err.count("RemoteMonitor could not reach") == 1
    assert (run.path / "history.csv").read_text().count("\n") == 3


def test_only_http_urls():
    with pytest.raises(ConfigError, match="http"):
        RemoteMonitor(root="file:///etc")
