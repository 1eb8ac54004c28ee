"""Build the terra-lab image of a commit, without a daemon: three layers, one manifest.

    ./tools/bazel run //launcher:build_image [-- --flavor cuda] [--revision HEAD]
    (launcher/build_image.py; //launcher:push_image builds and pushes)

Layers, ordered by how often they change (a code-only commit re-uploads kilobytes):
  1. base OS + Python 3.11 (base_layer.py), cached per machine by its recipe;
  2. the locked Python packages (deps_layer.py), cached by the lock and flavor;
  3. the commit's tracked files under /app (app_layer.py), rebuilt in about a second.

The manifest digest is a function of (commit, lock, base recipe): creation times are fixed,
labels hold only the commit sha, the project's source URL (a tracked setting), the lock
hash, the flavor and the base recipe key, and every blob and document is written
deterministically. Images land in the OCI layout of oci.BlobStore (the user's cache),
named `<sha>` (cpu) or `<sha>-cuda`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

from launcher.image import app_layer, base_layer, deps_layer, oci

SITE = "/" + deps_layer.SITE_PACKAGES
IMAGE_ENV = {
    "PATH": f"{SITE}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTHONPATH": f"/app:{SITE}",
    "PYTHONUNBUFFERED": "1",
    # The rootfs is read-only under the daemonless runtime; no .pyc writes to attempt.
    "PYTHONDONTWRITEBYTECODE": "1",
    "HOME": "/home/terra",
    "LANG": "C.UTF-8",
}
LABEL_PREFIX = "dev.terra-lab"


def default_cache_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "terra-lab" / "image"


def image_tag(commit: str, flavor: str) -> str:
    """Registry tag and layout name: the commit sha, suffixed for non-default flavors."""
    return commit if flavor == "cpu" else f"{commit}-{flavor}"


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    name: str  # "base", "deps" or "app"
    digest: str
    size: int
    seconds: float
    from_cache: bool


@dataclasses.dataclass(frozen=True)
class BuiltImage:
    """An image in the local blob store, ready to push.

    Attributes:
        store: where its blobs are.
        commit: full sha of the commit in the app layer.
        flavor: dependency flavor ("cpu" or "cuda").
        tag: the name it gets in registries (`image_tag`).
        manifest_digest: sha256 of the manifest: the image's immutable identity.
        config_digest: sha256 of the image configuration.
        layers: base, deps and app layers, in order.
        labels: the OCI labels written into the configuration.
    """

    store: oci.BlobStore
    commit: str
    flavor: str
    tag: str
    manifest_digest: str
    config_digest: str
    layers: tuple[LayerInfo, ...]
    labels: dict[str, str]

    @property
    def manifest_bytes(self) -> bytes:
        return self.store.read(self.manifest_digest)

    def blob_digests(self) -> list[str]:
        """Layers then config: the order a push uploads them (manifest last)."""
        return [layer.digest for layer in self.layers] + [self.config_digest]


def build_image(
    repo: Path,
    revision: str = "HEAD",
    flavor: str = "cpu",
    source_url: str = "",
    base_recipe: base_layer.BaseRecipe | None = None,
    lock_path: Path | None = None,
    cache_dir: Path | None = None,
    pip_args: list[str] | None = None,
) -> BuiltImage:
    """Build (or find in the cache) the image of `revision` in `repo`.

    Args:
        repo: a git checkout; only its object database is read (never the working tree).
        revision: what to build; resolved to a full commit sha.
        flavor: "cpu" or "cuda"; picks the lock when `lock_path` is not given.
        source_url: the `org.opencontainers.image.source` label.
        base_recipe: the base layer recipe (default: bookworm minbase from apt's mirror).
        lock_path: the lock to install (default: the flavor's lock file in `repo`'s commit).
        cache_dir: where layers and the OCI layout live (default: the user's cache).
        pip_args: extra pip arguments (default: $TERRA_LAB_PIP_ARGS).
    """
    deps_layer.check_flavor(flavor)
    repo = Path(repo).resolve()
    cache_dir = Path(cache_dir or default_cache_dir())
    store = oci.BlobStore(cache_dir / "oci")
    commit = app_layer.resolve_commit(repo, revision)
    base_recipe = base_recipe or base_layer.BaseRecipe(mirror=base_layer.configured_debian_mirror())
    if lock_path is None:
        lock_relative = deps_layer.FLAVOR_LOCKS[flavor]
        try:
            lock_text = app_layer.git(repo, "show", f"{commit}:{lock_relative}")
        except RuntimeError as error:
            raise RuntimeError(
                f"the {flavor} flavor installs {lock_relative}, which commit {commit[:12]} does "
                "not have; generate it (launcher/README.md, 'CPU and CUDA flavors') and commit it"
            ) from error
        lock_path = repo / lock_relative
    else:
        lock_text = Path(lock_path).read_text()
    deps_recipe = deps_layer.DepsRecipe(lock_text=lock_text, flavor=flavor)
    _progress(f"building the image of {commit[:12]} ({flavor})")

    start = time.monotonic()
    base = base_layer.build_base_layer(base_recipe, store, cache_dir)
    _report_layer("base", base)
    deps = deps_layer.build_deps_layer(deps_recipe, Path(lock_path), store, cache_dir, pip_args)
    _report_layer("deps", deps)
    app_start = time.monotonic()
    with tempfile.TemporaryDirectory(dir=cache_dir) as work:
        app = app_layer.build_app_layer(repo, commit, Path(work) / "app.tar")
        store.put_file(Path(work) / "app.tar", app.digest)
    app_seconds = time.monotonic() - app_start
    _progress(
        f"layer app : {app.size / 1e6:9.1f} MB {app.digest[:19]} built in {app_seconds:.1f} s"
    )

    labels = {
        "org.opencontainers.image.revision": commit,
        "org.opencontainers.image.source": source_url,
        "org.opencontainers.image.title": "terra-lab",
        f"{LABEL_PREFIX}.lock.sha256": deps_recipe.lock_hash(),
        f"{LABEL_PREFIX}.flavor": flavor,
        f"{LABEL_PREFIX}.base.recipe": base_recipe.key(),
    }
    history = [
        oci.HistoryEntry(base_recipe.describe(), "layer 1: base OS + Python"),
        oci.HistoryEntry(
            f"pip install --require-hashes --no-deps --target {SITE} "
            f"-r {deps_layer.FLAVOR_LOCKS[flavor]} ({deps_recipe.lock_hash()})",
            "layer 2: locked Python dependencies",
        ),
        oci.HistoryEntry(f"git ls-tree {commit}: tracked files into /app", "layer 3: application"),
    ]
    config = oci.image_config(
        diff_ids=[base.digest, deps.digest, app.digest],
        history=history,
        user=f"{base_recipe.uid}:{base_recipe.uid}",
        env=IMAGE_ENV,
        entrypoint=["/" + base_layer.ENTRYPOINT_PATH],
        working_dir="/app",
        labels=labels,
    )
    config_bytes = oci.canonical_json(config)
    config_digest = store.put_bytes(config_bytes)
    layer_descriptors = [
        oci.Descriptor(oci.LAYER_MEDIA_TYPE, layer.digest, layer.size) for layer in (base, deps)
    ] + [oci.Descriptor(oci.LAYER_MEDIA_TYPE, app.digest, app.size)]
    manifest = oci.image_manifest(
        oci.Descriptor(oci.CONFIG_MEDIA_TYPE, config_digest, len(config_bytes)),
        layer_descriptors,
        annotations={"org.opencontainers.image.revision": commit},
    )
    manifest_bytes = oci.canonical_json(manifest)
    manifest_digest = store.put_bytes(manifest_bytes)
    tag = image_tag(commit, flavor)
    store.tag(oci.Descriptor(oci.MANIFEST_MEDIA_TYPE, manifest_digest, len(manifest_bytes)), tag)
    total = time.monotonic() - start
    _progress(f"image {manifest_digest} ({total:.1f} s; layout {store.root}, name {tag})")
    return BuiltImage(
        store=store,
        commit=commit,
        flavor=flavor,
        tag=tag,
        manifest_digest=manifest_digest,
        config_digest=config_digest,
        layers=(
            LayerInfo("base", base.digest, base.size, base.seconds, not base.built),
            LayerInfo("deps", deps.digest, deps.size, deps.seconds, not deps.built),
            LayerInfo("app", app.digest, app.size, app_seconds, False),
        ),
        labels=labels,
    )


def _report_layer(name: str, layer: base_layer.CachedLayer) -> None:
    how = f"built in {layer.seconds:.1f} s" if layer.built else "from the cache"
    _progress(f"layer {name:<4}: {layer.size / 1e6:9.1f} MB {layer.digest[:19]} {how}")


def _progress(message: str) -> None:
    print(f"[image] {message}", file=sys.stderr, flush=True)
