"""Layer 1, the base OS: Debian bookworm minbase + Python 3.11, built once per machine.

`debootstrap --variant=minbase --include=python3,python-is-python3 bookworm` from the Debian
mirror configured in /etc/apt/sources.list* (about 60 s, 155 MB as tar), then normalized so
two runs give byte-identical tars:

- files whose content is a timestamp or a cache of the build machine are removed: apt's
  package lists and binary caches, logs, `var/cache/ldconfig/aux-cache`, `__pycache__`,
  the `*-old` and `*-` backups of dpkg, debconf and the account files, `etc/machine-id`;
- `etc/shadow`'s "last password change" day (the build date) is blanked;
- `etc/resolv.conf` and `etc/hostname` (copied from the build host) become empty files and
  `etc/hosts` names only localhost; runtimes mount their own over them.

On top of the OS it adds what the image contract needs, so the later layers hold only
packages and code: the non-root user `terra` (uid/gid 1000, home /home/terra), the entrypoint
`/usr/local/bin/terra-entrypoint`, and the mount points `/app/runs` (run root) and `/data`.

The tar is cached in the user's cache, keyed by the recipe (suite, variant, packages, mirror,
user, entrypoint text, normalization version): every clone on a machine reuses it. Because a
live mirror moves with Debian point releases, two *machines* agree on this layer only when
they build from the same mirror snapshot (set `base.mirror` in launcher/clusters.yaml to a
snapshot.debian.org URL for that); the layer digest is a label on every image either way.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from launcher.image import oci, tar_layer
from launcher.services import packages, process

ENTRYPOINT_PATH = "usr/local/bin/terra-entrypoint"
_ENTRYPOINT_SOURCE = Path(__file__).with_name("entrypoint.sh")
# Bump when the normalization below changes: it is part of the cache key.
NORMALIZATION_VERSION = 2


def read_entrypoint() -> str:
    return _ENTRYPOINT_SOURCE.read_text()


@dataclasses.dataclass(frozen=True)
class BaseRecipe:
    """Everything the base layer's bytes depend on.

    Attributes:
        mirror: Debian mirror URL (see `configured_debian_mirror`).
        suite: Debian release.
        variant: debootstrap variant; minbase is dpkg + apt + essential packages only.
        packages: extra Debian packages; Python only, to keep the image small.
        user: name of the non-root user the image runs as.
        uid: its numeric uid and gid.
        entrypoint: text of the entrypoint script.
    """

    mirror: str
    suite: str = "bookworm"
    variant: str = "minbase"
    packages: tuple[str, ...] = ("python3", "python-is-python3")
    user: str = "terra"
    uid: int = 1000
    entrypoint: str = dataclasses.field(default_factory=read_entrypoint)

    def __post_init__(self) -> None:
        if not re.match(r"^(https?|file)://", self.mirror):
            raise ValueError(
                f"BaseRecipe.mirror must be an http(s):// or file:// URL, got {self.mirror!r}"
            )
        if self.variant not in ("minbase", "buildd"):
            raise ValueError(f"BaseRecipe.variant must be minbase or buildd, got {self.variant!r}")
        if not re.match(r"^[a-z_][a-z0-9_-]*$", self.user):
            raise ValueError(f"BaseRecipe.user must be a Unix user name, got {self.user!r}")
        if not 1 <= self.uid < 65534:
            raise ValueError(f"BaseRecipe.uid must be a non-root id in [1, 65534), got {self.uid}")

    def key(self) -> str:
        """sha256 of the recipe: the cache key and an image label."""
        document = dataclasses.asdict(self)
        document["normalization_version"] = NORMALIZATION_VERSION
        return oci.sha256_digest(oci.canonical_json(document))

    def describe(self) -> str:
        """One line for `docker history` (no secrets: the recipe holds none)."""
        return (
            f"debootstrap --variant={self.variant} --include={','.join(self.packages)} "
            f"{self.suite} {self.mirror}; user {self.user} ({self.uid}); terra-entrypoint"
        )


def configured_debian_mirror(suite: str = "bookworm", apt_dir: Path = Path("/etc/apt")) -> str:
    """The mirror apt uses for `suite` (not the security archive), from sources.list*.

    Reads both formats: one-line `deb URI SUITE COMPONENTS` and deb822 `.sources` stanzas.
    """
    candidates: list[tuple[str, list[str]]] = []  # (uri, suites)
    files = [apt_dir / "sources.list"] + sorted((apt_dir / "sources.list.d").glob("*.list"))
    for path in files:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line.startswith("deb "):
                continue
            words = re.sub(r"\[[^\]]*\]", "", line).split()
            if len(words) >= 3:
                candidates.append((words[1], [words[2]]))
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                candidates.append((uri, fields.get("suites", "").split()))
    for uri, suites in candidates:
        if suite in suites:
            return uri.rstrip("/")
    raise RuntimeError(
        f"no Debian mirror for {suite!r} in {apt_dir}/sources.list or sources.list.d/; "
        f"add one (e.g. `deb http://deb.debian.org/debian {suite} main`) or set base.mirror "
        "in launcher/clusters.yaml"
    )


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def normalize_rootfs(root: Path) -> None:
    """Remove or blank what differs between two debootstrap runs (module docstring)."""
    for pattern in (
        "var/cache/apt/*.bin",
        "var/cache/apt/archives/*.deb",
        "var/cache/apt/archives/partial/*",
        "var/lib/apt/lists/*",
        "var/cache/ldconfig/aux-cache",
        "var/cache/debconf/*-old",
        "var/lib/dpkg/*-old",
        "etc/*-",
        "etc/machine-id",
        "var/lib/dbus/machine-id",
        "debootstrap",
    ):
        for match in root.glob(pattern):
            if match.name != "lock":
                _remove(match)
    for log in (root / "var/log").rglob("*"):
        if log.is_file() or log.is_symlink():
            log.unlink()
    for cache in sorted(root.rglob("__pycache__"), reverse=True):
        _remove(cache)
    for name, content in (
        ("etc/resolv.conf", ""),
        ("etc/hostname", ""),
        # localhost must resolve without DNS (torchrun --standalone rendezvous on it).
        ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
    ):
        target = root / name
        if target.is_symlink():
            target.unlink()
        target.write_text(content)
        os.chmod(target, 0o644)
    shadow = root / "etc/shadow"
    if shadow.exists():
        lines = []
        for line in shadow.read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 2:
                fields[2] = ""  # the day of the build
            lines.append(":".join(fields))
        shadow.write_text("\n".join(lines) + "\n")


def add_image_contract(root: Path, recipe: BaseRecipe) -> None:
    """The non-root user, the entrypoint and the mount points (module docstring)."""
    uid = recipe.uid
    with open(root / "etc/passwd", "a") as f:
        f.write(f"{recipe.user}:x:{uid}:{uid}::/home/{recipe.user}:/bin/sh\n")
    with open(root / "etc/group", "a") as f:
        f.write(f"{recipe.user}:x:{uid}:\n")
    with open(root / "etc/shadow", "a") as f:
        f.write(f"{recipe.user}:!::::::\n")
    if (root / "etc/gshadow").exists():
        with open(root / "etc/gshadow", "a") as f:
            f.write(f"{recipe.user}:!::\n")
    home = root / "home" / recipe.user
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, uid, uid)
    os.chmod(home, 0o755)
    entrypoint = root / ENTRYPOINT_PATH
    entrypoint.parent.mkdir(parents=True, exist_ok=True)
    entrypoint.write_text(recipe.entrypoint)
    os.chmod(entrypoint, 0o755)
    for mount_point, mode in (("app", 0o755), ("app/runs", 0o1777), ("data", 0o755)):
        (root / mount_point).mkdir(exist_ok=True)
        os.chmod(root / mount_point, mode)


class BaseLayerNeedsRoot(RuntimeError):
    """The base layer is not cached and only root can build it; one line saying how."""


# Once as root, the layer is cached for every user of this cache.
_BUILD_AS_ROOT = "sudo -E ./tools/bazel run //launcher:build_image"


def _debootstrap(recipe: BaseRecipe, root: Path, log: Path) -> None:
    if os.geteuid() != 0:
        if packages.missing(["debootstrap"]):
            raise BaseLayerNeedsRoot(
                "building the base layer needs debootstrap, which is not installed, and root: "
                "run `sudo apt-get update && sudo apt-get install -y debootstrap`, then "
                f"`{_BUILD_AS_ROOT}` once on this machine"
            )
        raise BaseLayerNeedsRoot(
            "building the base layer runs debootstrap, which needs root: run "
            f"`{_BUILD_AS_ROOT}` once on this machine (the layer is then cached for every user)"
        )
    # A fresh machine has no debootstrap; like the dev services' daemons, install it on demand.
    packages.ensure_installed({"debootstrap": "debootstrap"})
    command = [
        process.program("debootstrap"),
        f"--variant={recipe.variant}",
        f"--include={','.join(recipe.packages)}",
        recipe.suite,
        str(root),
        recipe.mirror,
    ]
    with open(log, "w") as log_file:
        result = subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise RuntimeError(f"debootstrap failed (exit {result.returncode}); log {log}:\n{tail}")


@dataclasses.dataclass(frozen=True)
class CachedLayer:
    """A layer in the blob store, with how it was made (for progress output and labels)."""

    digest: str
    size: int
    key: str
    built: bool
    seconds: float


def cached_layer(
    kind: str,
    key: str,
    store: oci.BlobStore,
    cache_dir: Path,
    build: Callable[[Path], tar_layer.LayerDigest],
    details: dict[str, Any],
) -> CachedLayer:
    """The layer `<kind>-<key>` from the blob store, or `build(work_dir)` now and record it.

    The record (`recipes/<kind>-<key>.json`: digest, size, `details`, build seconds) is
    written only after the blob is stored, and the whole check-or-build runs under a file
    lock: another clone may be building the same layer right now. `build(work)` writes the
    layer to `work / "layer.tar"` and returns its digest; `work` is removed afterwards.
    """
    recipes = cache_dir / "recipes"
    recipes.mkdir(parents=True, exist_ok=True)
    record = recipes / f"{kind}-{key}.json"
    with open(recipes / f"{kind}-{key}.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if record.exists():
            cached = json.loads(record.read_text())
            if store.has(cached["digest"]):
                return CachedLayer(cached["digest"], cached["size"], key, False, 0.0)
        start = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=cache_dir))
        try:
            layer = build(work)
            store.put_file(work / "layer.tar", layer.digest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        seconds = time.monotonic() - start
        summary = {"digest": layer.digest, "size": layer.size, **details}
        record.write_text(json.dumps({**summary, "build_seconds": round(seconds, 1)}, indent=2))
        return CachedLayer(layer.digest, layer.size, key, True, seconds)


def build_base_layer(recipe: BaseRecipe, store: oci.BlobStore, cache_dir: Path) -> CachedLayer:
    """The base layer for `recipe`: from the cache, or built now (root needed)."""

    def build(work: Path) -> tar_layer.LayerDigest:
        rootfs = work / "rootfs"
        _progress(f"base layer: debootstrap {recipe.suite} from {recipe.mirror} (once)")
        _debootstrap(recipe, rootfs, work / "debootstrap.log")
        normalize_rootfs(rootfs)
        add_image_contract(rootfs, recipe)
        _progress("base layer: writing the tar")
        return tar_layer.write_layer(tar_layer.sorted_tree(rootfs, ""), work / "layer.tar")

    key = recipe.key().removeprefix("sha256:")
    details = {"recipe": dataclasses.asdict(recipe)}
    return cached_layer("base", key, store, cache_dir, build, details)


def _progress(message: str) -> None:
    print(f"[image] {message}", file=sys.stderr, flush=True)
