"""Push an OCI image to a registry over the distribution API v2, with urllib only.

Order of a push, so a tag never names a half-pushed image:
  1. each blob (layers, then config): HEAD, and upload only if the registry lacks it;
  2. the manifest, PUT by its digest, then read back by digest and compared byte for byte;
  3. only then the tag (the commit sha), read back and checked to resolve to that digest.

Requests that fail transiently (connection refused or reset, timeouts, HTTP 429/5xx) are
retried with exponential backoff, a bounded number of times; a blob upload restarts from
its POST. Other errors (4xx) fail at once with the registry's message.

Auth: anonymous, or the token flow of `WWW-Authenticate: Bearer` (Docker Hub, GHCR, ...)
and Basic, with credentials from TERRA_LAB_REGISTRY_USER / TERRA_LAB_REGISTRY_PASSWORD.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from launcher.image import oci
from launcher.image.build import BuiltImage

MANIFEST_ACCEPT = ", ".join(
    [
        oci.MANIFEST_MEDIA_TYPE,
        oci.INDEX_MEDIA_TYPE,
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)


class RegistryError(RuntimeError):
    """The registry refused a request, or kept failing after all retries."""


class _Transient(Exception):
    """A failure worth retrying (wrapped into RegistryError when retries run out)."""


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff: waits initial, 2x, 4x ... capped at max_backoff_s."""

    attempts: int = 5
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be >= 1, got {self.attempts}")


@dataclasses.dataclass(frozen=True)
class ImageReference:
    """`host[:port]/repository@sha256:...`: an immutable image name."""

    registry: str
    repository: str
    digest: str

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}@{self.digest}"

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        match = re.match(r"^([^/]+)/(.+)@(sha256:[0-9a-f]{64})$", text)
        if not match:
            raise ValueError(f"not an image reference by digest (host/repo@sha256:...): {text!r}")
        return cls(match.group(1), match.group(2), match.group(3))


@dataclasses.dataclass(frozen=True)
class PushResult:
    reference: ImageReference
    tag: str
    bytes_uploaded: int
    blobs_uploaded: int
    blobs_skipped: int
    seconds: float


class _ProgressReader:
    """A file wrapper that reports bytes read (http.client streams request bodies with it)."""

    def __init__(self, raw: BinaryIO, total: int, report: Callable[[int, int], None]) -> None:
        self._raw = raw
        self._total = total
        self._report = report
        self._done = 0
        # A line per 10% of a large blob; small blobs (app layer, config) get none.
        self._step = max(total // 10, 8 << 20)
        self._next_report = self._step

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        if chunk:
            self._done += len(chunk)
            if self._done >= self._next_report:
                self._report(self._done, self._total)
                self._next_report += self._step
        return chunk


def _log(message: str) -> None:
    print(f"[push] {message}", file=sys.stderr, flush=True)


class RegistryClient:
    """One repository of one registry.

    Args:
        url: registry base URL (http://127.0.0.1:5000, https://ghcr.io).
        repository: repository path inside it (terra-lab, org/terra-lab).
        retry: backoff policy for transient failures.
        log: progress sink (one line per call).
    """

    def __init__(
        self,
        url: str,
        repository: str,
        retry: RetryPolicy = RetryPolicy(),
        log: Callable[[str], None] = _log,
        timeout_s: float = 300.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.repository = repository
        self.retry = retry
        self.log = log
        self.timeout_s = timeout_s
        self._token: str | None = None
        user = os.environ.get("TERRA_LAB_REGISTRY_USER")
        password = os.environ.get("TERRA_LAB_REGISTRY_PASSWORD", "")
        self._basic = (
            "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode() if user else None
        )

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]

    # -- HTTP with retries and auth ---------------------------------------------------------

    def _once(
        self,
        method: str,
        url: str,
        body: bytes | BinaryIO | None,
        headers: dict[str, str],
        expected: tuple[int, ...],
    ) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(url, data=body, method=method, headers=dict(headers))
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        elif self._basic:
            request.add_header("Authorization", self._basic)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status, reply_headers, data = (
                    response.status,
                    dict(response.headers),
                    response.read(),
                )
        except urllib.error.HTTPError as error:
            status, reply_headers, data = error.code, dict(error.headers), error.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
            raise _Transient(f"{method} {url}: {getattr(error, 'reason', error)}") from error
        if (
            status == 401
            and "Bearer" in reply_headers.get("WWW-Authenticate", "")
            and not self._token
        ):
            self._token = self._fetch_token(reply_headers["WWW-Authenticate"])
            return self._once(method, url, body, headers, expected)
        if status in _TRANSIENT_STATUS:
            raise _Transient(f"{method} {url}: HTTP {status} {data[:200]!r}")
        if status not in expected:
            raise RegistryError(f"{method} {url}: HTTP {status}: {_registry_message(data)}")
        return status, reply_headers, data

    def _fetch_token(self, challenge: str) -> str:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        if "realm" not in params:
            raise RegistryError(f"registry asked for a token without a realm: {challenge}")
        query = {key: value for key, value in params.items() if key in ("service", "scope")}
        request = urllib.request.Request(f"{params['realm']}?{urllib.parse.urlencode(query)}")
        if self._basic:
            request.add_header("Authorization", self._basic)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                document = json.loads(response.read())
        except urllib.error.URLError as error:
            realm = params["realm"]
            raise RegistryError(f"could not get a registry token from {realm}: {error}") from error
        return document.get("token") or document["access_token"]

    def _request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        expected: tuple[int, ...] = (200,),
    ) -> tuple[int, dict[str, str], bytes]:
        return self._with_retries(
            f"{method} {url}", lambda: self._once(method, url, body, headers or {}, expected)
        )

    def _with_retries(self, what: str, action: Callable[[], object]) -> object:
        delay = self.retry.initial_backoff_s
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return action()
            except _Transient as error:
                if attempt == self.retry.attempts:
                    raise RegistryError(
                        f"{what} still failing after {attempt} attempts: {error}"
                    ) from error
                self.log(f"transient failure ({error}); retry {attempt} in {delay:.1f} s")
                time.sleep(delay)
                delay = min(delay * 2, self.retry.max_backoff_s)
        raise AssertionError("unreachable")

    def _api(self, path: str) -> str:
        return f"{self.url}/v2/{self.repository}/{path}"

    # -- registry operations ----------------------------------------------------------------

    def ping(self) -> None:
        self._request("GET", f"{self.url}/v2/", expected=(200,))

    def blob_exists(self, digest: str) -> bool:
        status, _, _ = self._request("HEAD", self._api(f"blobs/{digest}"), expected=(200, 404))
        return status == 200

    def upload_blob(self, digest: str, path: Path, size: int, label: str) -> None:
        """Monolithic upload (POST, then PUT with the bytes); restarts from POST on failure."""

        def report(done: int, total: int) -> None:
            self.log(f"{label}: {done / 1e6:.1f}/{total / 1e6:.1f} MB")

        def attempt() -> None:
            _, headers, _ = self._once(
                "POST", self._api("blobs/uploads/"), b"", {"Content-Length": "0"}, (202,)
            )
            location = urllib.parse.urljoin(self.url + "/", headers["Location"])
            separator = "&" if "?" in location else "?"
            target = f"{location}{separator}digest={urllib.parse.quote(digest)}"
            with open(path, "rb") as raw:
                self._once(
                    "PUT",
                    target,
                    _ProgressReader(raw, size, report),  # type: ignore[arg-type]
                    {"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                    (201,),
                )

        self._with_retries(f"upload {digest}", attempt)

    def put_manifest(self, reference: str, body: bytes, media_type: str) -> str:
        _, headers, _ = self._request(
            "PUT",
            self._api(f"manifests/{reference}"),
            body,
            {"Content-Type": media_type},
            expected=(201,),
        )
        return headers.get("Docker-Content-Digest", "")

    def get_manifest(self, reference: str) -> tuple[bytes, str]:
        """(bytes, digest) of a manifest by tag or digest."""
        _, headers, body = self._request(
            "GET", self._api(f"manifests/{reference}"), headers={"Accept": MANIFEST_ACCEPT}
        )
        return body, headers.get("Docker-Content-Digest", oci.sha256_digest(body))

    def tags(self) -> list[str]:
        status, _, body = self._request("GET", self._api("tags/list"), expected=(200, 404))
        return sorted(json.loads(body).get("tags") or []) if status == 200 else []

    def catalog(self) -> list[str]:
        _, _, body = self._request("GET", f"{self.url}/v2/_catalog")
        return sorted(json.loads(body).get("repositories") or [])


def push_image(client: RegistryClient, image: BuiltImage, tag: str) -> PushResult:
    """Push a built image: blobs, manifest by digest, verify, then tag."""
    start = time.monotonic()
    uploaded_bytes = uploaded = skipped = 0
    names = {layer.digest: f"layer {layer.name}" for layer in image.layers}
    names[image.config_digest] = "config"
    client.log(f"pushing {image.manifest_digest} to {client.url}/{client.repository}")
    for digest in image.blob_digests():
        path = image.store.path(digest)
        size = path.stat().st_size
        label = names[digest]
        if client.blob_exists(digest):
            skipped += 1
            client.log(
                f"{label}: {digest[:19]} already in the registry ({size / 1e6:.1f} MB skipped)"
            )
            continue
        blob_start = time.monotonic()
        client.upload_blob(digest, path, size, label)
        seconds = time.monotonic() - blob_start
        uploaded += 1
        uploaded_bytes += size
        client.log(f"{label}: uploaded {size / 1e6:.1f} MB in {seconds:.1f} s")
    manifest = image.manifest_bytes
    returned = client.put_manifest(image.manifest_digest, manifest, oci.MANIFEST_MEDIA_TYPE)
    uploaded_bytes += len(manifest)
    if returned and returned != image.manifest_digest:
        raise RegistryError(
            f"registry stored the manifest as {returned}, not {image.manifest_digest}"
        )
    body, digest = client.get_manifest(image.manifest_digest)
    if body != manifest or digest != image.manifest_digest:
        raise RegistryError(
            f"manifest read back from {client.url} differs from what was pushed "
            f"({digest} != {image.manifest_digest}); the tag was not moved"
        )
    client.log(f"manifest verified ({image.manifest_digest}); tagging {tag}")
    client.put_manifest(tag, manifest, oci.MANIFEST_MEDIA_TYPE)
    _, tagged = client.get_manifest(tag)
    if tagged != image.manifest_digest:
        raise RegistryError(f"tag {tag} resolves to {tagged}, not {image.manifest_digest}")
    reference = ImageReference(client.host, client.repository, image.manifest_digest)
    return PushResult(
        reference=reference,
        tag=tag,
        bytes_uploaded=uploaded_bytes,
        blobs_uploaded=uploaded,
        blobs_skipped=skipped,
        seconds=time.monotonic() - start,
    )


def _registry_message(data: bytes) -> str:
    try:
        errors = json.loads(data).get("errors") or []
        return (
            "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors) or data[:300].decode()
        )
    except (ValueError, AttributeError):
        return data[:300].decode(errors="replace")
