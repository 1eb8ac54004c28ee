"""Pushing to a real docker-registry: skip present blobs, tag last, retry transient failures.

Starts the registry through launcher/services in a private state directory on its own port.
"""

import http.client
import http.server
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from launcher import testing
from launcher.image import build
from launcher.registry import client as registry_client
from launcher.services import services

PORT = 5057


@pytest.fixture(scope="module")
def registry_url():
    root = Path(tempfile.mkdtemp(prefix="reg-", dir="/tmp"))
    registry = services.registry(root, f"127.0.0.1:{PORT}")
    url = registry.start()
    yield url
    registry.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("wheels")
    testing.make_wheel(directory)
    return directory


@pytest.fixture
def repo(tmp_path, wheel_dir):
    wheel = next(wheel_dir.glob("*.whl"))
    files = {
        "experiments/nano.py": "print('nano')\n",
        "third_party/python/requirements.lock": testing.lock_for(wheel),
    }
    return testing.make_repo(tmp_path / "repo", files)


def _build(repo, cache, wheel_dir):
    recipe = testing.tiny_base_recipe()
    testing.seed_tiny_base(cache, recipe)
    return build.build_image(
        repo,
        base_recipe=recipe,
        cache_dir=cache,
        pip_args=["--no-index", "--find-links", str(wheel_dir)],
    )


def test_push_verifies_then_tags_and_a_code_change_uploads_only_the_app_layer(
    registry_url, repo, tmp_path, wheel_dir
):
    client = registry_client.RegistryClient(registry_url, f"test/{tmp_path.name}")
    first = _build(repo, tmp_path / "cache", wheel_dir)
    pushed = registry_client.push_image(client, first, first.tag)
    assert str(pushed.reference) == f"127.0.0.1:{PORT}/test/{tmp_path.name}@{first.manifest_digest}"
    assert pushed.blobs_uploaded == 4 and pushed.blobs_skipped == 0
    assert client.get_manifest(first.tag) == (first.manifest_bytes, first.manifest_digest)

    again = registry_client.push_image(client, first, first.tag)
    assert (again.blobs_uploaded, again.blobs_skipped) == (0, 4)
    assert again.bytes_uploaded == len(first.manifest_bytes)  # the manifest PUTs only

    (repo / "experiments" / "nano.py").write_text("print('nano v2')\n")
    testing.commit_all(repo, "edit nano")
    second = _build(repo, tmp_path / "cache", wheel_dir)
    third = registry_client.push_image(client, second, second.tag)
    app, config = second.layers[2], second.config_digest
    config_size = second.store.path(config).stat().st_size
    assert third.blobs_uploaded == 2  # the app layer and the new config
    assert third.bytes_uploaded == app.size + config_size + len(second.manifest_bytes)
    assert client.tags() == sorted([first.tag, second.tag])


class _FlakyProxy(http.server.ThreadingHTTPServer):
    """Forwards to the registry, but answers 503 (or drops the connection) on a schedule."""

    def __init__(self, upstream_port: int, fail: callable) -> None:
        self.upstream_port = upstream_port
        self.fail = fail
        self.requests: list[str] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _forward(self) -> None:
        server: _FlakyProxy = self.server  # type: ignore[assignment]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        with server.lock:
            server.requests.append(f"{self.command} {self.path}")
            verdict = server.fail(self.command, self.path, len(server.requests))
        if verdict == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if verdict == "503":
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        upstream = http.client.HTTPConnection("127.0.0.1", server.upstream_port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() == "location":
                value = value.replace(f":{server.upstream_port}", f":{server.server_port}")
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward


def _proxied(fail):
    proxy = _FlakyProxy(PORT, fail)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    return proxy


def test_transient_failures_are_retried_with_backoff(registry_url, repo, tmp_path, wheel_dir):
    # Every third request fails: 503s and dropped connections alike.
    proxy = _proxied(
        lambda method, path, n: ("503" if n % 6 == 3 else "drop") if n % 3 == 0 else ""
    )
    try:
        messages: list[str] = []
        client = registry_client.RegistryClient(
            f"http://127.0.0.1:{proxy.server_port}",
            f"test/{tmp_path.name}",
            retry=registry_client.RetryPolicy(attempts=4, initial_backoff_s=0.01),
            log=messages.append,
        )
        image = _build(repo, tmp_path / "cache", wheel_dir)
        pushed = registry_client.push_image(client, image, image.tag)
    finally:
        proxy.shutdown()
    assert pushed.reference.digest == image.manifest_digest
    assert sum("retry" in message for message in messages) >= 3
    direct = registry_client.RegistryClient(registry_url, f"test/{tmp_path.name}")
    assert direct.get_manifest(image.tag)[1] == image.manifest_digest


def test_a_persistent_failure_gives_up_after_bounded_attempts_and_leaves_no_tag(
    registry_url, repo, tmp_path, wheel_dir
):
    # Manifest PUTs always fail: blobs arrive, but the image must never be tagged.
    proxy = _proxied(
        lambda method, path, n: "503" if method == "PUT" and "/manifests/" in path else ""
    )
    try:
        client = registry_client.RegistryClient(
            f"http://127.0.0.1:{proxy.server_port}",
            f"test/{tmp_path.name}",
            retry=registry_client.RetryPolicy(attempts=3, initial_backoff_s=0.01),
            log=lambda message: None,
        )
        image = _build(repo, tmp_path / "cache", wheel_dir)
        with pytest.raises(registry_client.RegistryError, match="after 3 attempts"):
            registry_client.push_image(client, image, image.tag)
        manifest_puts = [r for r in proxy.requests if r.startswith("PUT") and "/manifests/" in r]
    finally:
        proxy.shutdown()
    assert len(manifest_puts) == 3
    assert manifest_puts[0].endswith(image.manifest_digest)  # by digest first, never the tag
    direct = registry_client.RegistryClient(registry_url, f"test/{tmp_path.name}")
    assert image.tag not in direct.tags()
