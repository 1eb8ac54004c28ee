"""OCI image pieces written with the standard library: blobs, config, manifest, layout.

The blob store is an OCI image layout (https://github.com/opencontainers/image-spec,
`image-layout.md`) under the user's cache, shared by every clone on the machine:

    <cache>/terra-lab/image/oci/
        oci-layout                 {"imageLayoutVersion": "1.0.0"}
        index.json                 one manifest per built image, named by annotation
        blobs/sha256/<hex>         layers, configs and manifests

so `skopeo inspect oci:<dir>:<commit>` or `umoci unpack` work on what we build, and a layer
built once (the 1.2 GB dependency layer) is a single file that every image refers to.

JSON documents are serialized canonically (sorted keys, no whitespace) so a config or
manifest digest depends only on its content.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
# The OCI "created" time of every image and history entry: fixed, so it never moves a digest.
FIXED_CREATED = "1970-01-01T00:00:00Z"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


def canonical_json(document: Any) -> bytes:
    """Sorted keys, no whitespace: the same document always has the same bytes."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclasses.dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a manifest says about each blob."""

    media_type: str
    digest: str
    size: int
    annotations: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            document["annotations"] = dict(self.annotations)
        return document


@dataclasses.dataclass(frozen=True)
class HistoryEntry:
    """One line of `docker history`: what made a layer. Must never hold a secret."""

    created_by: str
    comment: str = ""


def image_config(
    diff_ids: list[str],
    history: list[HistoryEntry],
    user: str,
    env: dict[str, str],
    entrypoint: list[str],
    working_dir: str,
    labels: dict[str, str],
) -> dict[str, Any]:
    """The image configuration (image-spec `config.md`) with a fixed creation time."""
    if len(diff_ids) != len(history):
        raise ValueError(
            f"image_config needs one history entry per layer: {len(diff_ids)} layers, "
            f"{len(history)} history entries"
        )
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": FIXED_CREATED,
        "config": {
            "User": user,
            "Env": [f"{key}={value}" for key, value in env.items()],
            "Entrypoint": entrypoint,
            "WorkingDir": working_dir,
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": FIXED_CREATED, "created_by": entry.created_by, "comment": entry.comment}
            for entry in history
        ],
    }


def image_manifest(
    config: Descriptor, layers: list[Descriptor], annotations: dict[str, str]
) -> dict[str, Any]:
    """An OCI image manifest (image-spec `manifest.md`)."""
    return {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
        "annotations": annotations,
    }


class BlobStore:
    """A content-addressed OCI image layout on disk (see the module docstring).

    Writers take an exclusive lock on the layout, so two clones building at the same time
    never see a half-written blob or lose an index entry.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        layout = self.root / "oci-layout"
        if not layout.exists():
            layout.write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
        if not (self.root / "index.json").exists():
            self._write_index({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []})

    def path(self, digest: str) -> Path:
        algorithm, _, hex_digest = digest.partition(":")
        if algorithm != "sha256" or len(hex_digest) != 64:
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / "blobs" / "sha256" / hex_digest

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def put_bytes(self, data: bytes) -> str:
        digest = sha256_digest(data)
        target = self.path(digest)
        if not target.exists():
            tmp = target.with_name(target.name + f".tmp{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        return digest

    def put_file(self, path: Path, digest: str) -> None:
        """Move a finished file (hashed while it was written) into the store under `digest`."""
        target = self.path(digest)
        if target.exists():
            path.unlink()
        else:
            shutil.move(str(path), target)

    def read(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            yield

    def tag(self, manifest: Descriptor, name: str) -> None:
        """Name a manifest in index.json (replacing an older manifest of that name)."""
        with self.locked():
            index = json.loads((self.root / "index.json").read_text())
            manifests = [
                entry
                for entry in index["manifests"]
                if entry.get("annotations", {}).get(REF_NAME_ANNOTATION) != name
            ]
            entry = manifest.to_json()
            entry["annotations"] = {REF_NAME_ANNOTATION: name}
            manifests.append(entry)
            manifests.sort(key=lambda item: item["annotations"][REF_NAME_ANNOTATION])
            index["manifests"] = manifests
            self._write_index(index)

    def _write_index(self, index: dict[str, Any]) -> None:
        tmp = self.root / f"index.json.tmp{os.getpid()}"
        tmp.write_text(json.dumps(index, indent=2, sort_keys=True))
        os.replace(tmp, self.root / "index.json")
