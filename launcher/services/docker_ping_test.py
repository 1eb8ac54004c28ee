"""docker_engine_answers: the docker SDK's ping, against an engine API on a Unix socket.

A real engine is services_test's business (it starts dockerd); here a 30-line stand-in
answers the two requests the SDK makes (/version to agree on an API version, then /_ping),
so the check is proven both ways without root or a daemon.
"""

from __future__ import annotations

import http.server
import json
import shutil
import socketserver
import tempfile
import threading
from pathlib import Path

import pytest

from launcher.services import services


class _EngineAPI(http.server.BaseHTTPRequestHandler):
    healthy = True

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        if self.path.endswith("/version"):
            body = json.dumps({"ApiVersion": "1.43", "Version": "24.0.0"}).encode()
            kind = "application/json"
        elif self.path.endswith("/_ping") and self.healthy:
            body, kind = b"OK", "text/plain"
        else:
            self.send_error(500)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:  # a Unix socket has no client address
        return "unix"

    def log_message(self, *args: object) -> None:
        pass


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def engine_socket():
    # Bazel's test tmpdir is deeper than a Unix socket path may be (108 bytes).
    folder = Path(tempfile.mkdtemp(prefix="engine-", dir="/tmp"))
    path = folder / "docker.sock"
    server = _UnixHTTPServer(str(path), _EngineAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield path
    server.shutdown()
    server.server_close()
    shutil.rmtree(folder)


def test_an_engine_that_answers_its_ping_counts(engine_socket: Path) -> None:
    assert services.docker_engine_answers(f"unix://{engine_socket}")


def test_an_engine_whose_ping_fails_does_not_count(engine_socket, monkeypatch) -> None:
    monkeypatch.setattr(_EngineAPI, "healthy", False)
    assert not services.docker_engine_answers(f"unix://{engine_socket}")


def test_no_socket_or_nothing_listening_does_not_count(tmp_path: Path) -> None:
    assert not services.docker_engine_answers(f"unix://{tmp_path / 'absent.sock'}")
    assert not services.docker_engine_answers("tcp://127.0.0.1:9", timeout_s=1)
