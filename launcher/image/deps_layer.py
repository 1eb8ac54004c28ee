"""Layer 2, the locked Python dependencies, installed into /opt/terra/site-packages.

`pip install --require-hashes --no-deps --no-compile --target ... -r <lock>`: every package,
transitive ones included, comes from the lock with a matching hash, so the layer's content
is a function of the lock. What pip adds on its own is normalized:

- bytecode is compiled afterwards by Debian's python3.11 (the base layer's interpreter) as
  *unchecked-hash* pycs: they embed no source mtime, so they are deterministic, and they are
  valid on the read-only rootfs of the daemonless runtime, where Python cannot write its
  own (`import torch` from source takes about 20 s per process; from these pycs, ~2 s);
- script shebangs name pip's own interpreter (a path in the user's cache): rewritten to
  `#!/usr/bin/python3`, the image's interpreter, and their RECORD lines updated to match;
- owners 0:0 and modes 0755 (directories, executables) / 0644 (other files), whatever the
  umask was.

Flavors. The default `cpu` flavor installs third_party/python/requirements.lock (the CPU
build of torch, like the dev venv). GPU clusters use the `cuda` flavor: the same
requirements with PyPI's CUDA build of torch (and the nvidia-* wheels it pulls in), pinned in
launcher/image/requirements-cuda.lock and regenerated with
`./tools/bazel run //launcher/image:update_cuda_lock` whenever requirements.lock changes.
Choose it per cluster (`image_flavor: cuda` in launcher/clusters.yaml), per push
(`bazel run //launcher:push_image -- --flavor cuda`) or for a shell session
(`export TERRA_LAB_IMAGE_FLAVOR=cuda`). Like its lock, the cuda flavor installs from PyPI
alone: pip's find-links/extra-index settings (local CPU wheels) are ignored for it.

The layer is cached in the user's cache, keyed by the lock's bytes, the flavor and the
Python version; pip's own settings (indexes, find-links, TERRA_LAB_PIP_ARGS) only say
where the hash-checked files come from, so they are not part of the key.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from launcher.image import oci, tar_layer
from launcher.image.base_layer import CachedLayer, cached_layer

SITE_PACKAGES = "opt/terra/site-packages"
PYTHON = "/usr/bin/python3.11"  # Debian's, the interpreter of the base layer
NORMALIZATION_VERSION = 2
FLAVOR_LOCKS = {
    "cpu": "third_party/python/requirements.lock",
    "cuda": "launcher/image/requirements-cuda.lock",
}
FLAVOR_ENV = "TERRA_LAB_IMAGE_FLAVOR"


def check_flavor(flavor: str) -> str:
    if flavor not in FLAVOR_LOCKS:
        raise ValueError(f"image flavor must be one of {sorted(FLAVOR_LOCKS)}, got {flavor!r}")
    return flavor


@dataclasses.dataclass(frozen=True)
class DepsRecipe:
    """Everything the dependency layer's bytes depend on.

    Attributes:
        lock_text: the content of the lock file.
        flavor: "cpu" or "cuda" (module docstring).
        python: the Debian package version of python3.11 that compiles the bytecode (the
            pycs are specific to it; the base layer installs the same package).
    """

    lock_text: str
    flavor: str = "cpu"
    python: str = dataclasses.field(default_factory=lambda: interpreter_version())

    def __post_init__(self) -> None:
        check_flavor(self.flavor)
        if "--hash=sha256:" not in self.lock_text:
            raise ValueError("DepsRecipe.lock_text must be a hash-pinned lock (pip-compile output)")

    def lock_hash(self) -> str:
        return oci.sha256_digest(self.lock_text.encode())

    def key(self) -> str:
        document = {
            "lock": self.lock_hash(),
            "flavor": self.flavor,
            "python": self.python,
            "site_packages": SITE_PACKAGES,
            "normalization_version": NORMALIZATION_VERSION,
        }
        return oci.sha256_digest(oci.canonical_json(document))


def interpreter_version() -> str:
    """Debian's version of the python3.11 package (e.g. 3.11.2-6+deb12u6)."""
    query = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "python3.11"], capture_output=True, text=True
    )
    if query.returncode == 0 and query.stdout:
        return query.stdout
    result = subprocess.run(
        [PYTHON, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True
    )
    return result.stdout.strip()


def compile_bytecode(site: Path) -> None:
    """Unchecked-hash pycs for every module, with image paths in their code objects."""
    subprocess.run(
        [
            PYTHON,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            "-d",
            "/" + SITE_PACKAGES,
            ".",
        ],
        cwd=site,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,  # a few packages ship data files that are not Python 3; they stay .py
    )


def _pip_venv(cache_dir: Path) -> Path:
    """A venv whose pip (Debian's bundled 23.0.1) runs the installs, made once."""
    venv = cache_dir / "pip-venv"
    if not (venv / "bin" / "pip").exists():
        if venv.exists():
            shutil.rmtree(venv)
        result = subprocess.run([PYTHON, "-m", "venv", str(venv)], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"`{PYTHON} -m venv` failed: {result.stderr.strip()}\n"
                "Install Debian's python3.11-venv (./tools/bazel does it on first run)."
            )
    return venv


# pip settings that may point at local CPU wheels (this workplace's machines have torch
# 2.13.0+cpu in a find-links folder, and `torch==2.13.0` would pick it, then fail its hash).
_LOCAL_WHEEL_SETTINGS = ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "PIP_CONSTRAINT")


def pip_environment(flavor: str) -> dict[str, str]:
    """pip's environment: the machine's settings for cpu; PyPI alone for cuda, like the lock."""
    env = dict(os.environ)
    if flavor == "cuda":
        for name in _LOCAL_WHEEL_SETTINGS:
            env.pop(name, None)
        env["PIP_CONFIG_FILE"] = os.devnull
    return env


def pip_install(
    lock: Path, target: Path, cache_dir: Path, pip_args: list[str], flavor: str = "cpu"
) -> None:
    """Install `lock` into `target` with hash checking; raises with pip's last lines."""
    venv = _pip_venv(cache_dir)
    command = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--require-hashes",
        "--no-deps",
        "--no-compile",
        "--no-warn-script-location",
        "--target",
        str(target),
        "-r",
        str(lock),
        *pip_args,
    ]
    log = cache_dir / "pip-install.log"
    with open(log, "w") as log_file:
        result = subprocess.run(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=pip_environment(flavor)
        )
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-20:])
        raise RuntimeError(f"pip could not install {lock} (full log {log}):\n{tail}")


def _record_hash(content: bytes) -> str:
    digest = hashlib.sha256(content).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# distlib's header when the interpreter path is too long for a shebang (over 127 bytes,
# e.g. under Bazel's test directories): "#!/bin/sh", then a line starting with three
# quotes and `exec' "<python>" "$0" "$@"`, then a closing-quotes line; the script follows.
_SH_WRAPPER = re.compile(rb"\A#!/bin/sh\n'''exec' [^\n]*\n' '''\n")


def _script_body(content: bytes) -> bytes | None:
    """A pip console script without its interpreter header, or None for other files."""
    if match := _SH_WRAPPER.match(content):
        return content[match.end() :]
    first, _, rest = content.partition(b"\n")
    if first.startswith(b"#!") and b"python" in first:
        return rest
    return None


def normalize_site(site: Path) -> None:
    """Shebangs (and their RECORD lines) and stray bytecode; modes are fixed while archiving."""
    for cache in sorted(site.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache)
    rewritten: dict[str, bytes] = {}
    bin_dir = site / "bin"
    if bin_dir.is_dir():
        for script in sorted(bin_dir.iterdir()):
            if script.is_symlink() or not script.is_file():
                continue
            body = _script_body(script.read_bytes())
            if body is not None:
                content = b"#!/usr/bin/python3\n" + body
                script.write_bytes(content)
                rewritten[script.name] = content
    if not rewritten:
        return
    # RECORD holds each script's hash as pip wrote it (with pip's interpreter path).
    for record in sorted(site.glob("*.dist-info/RECORD")):
        lines = record.read_text().splitlines()
        changed = False
        for index, line in enumerate(lines):
            path, _, _ = line.partition(",")
            name = path.rsplit("/", 1)[-1]
            if "/bin/" in f"/{path}" and name in rewritten:
                content = rewritten[name]
                lines[index] = f"{path},{_record_hash(content)},{len(content)}"
                changed = True
        if changed:
            record.write_text("\n".join(lines) + "\n")


def normalized_entries(site: Path, prefix: str) -> Iterator[tar_layer.Entry]:
    """The tree under `site` as root-owned entries with 0755/0644 modes."""
    for entry in tar_layer.sorted_tree(site, prefix, keep_owner=False):
        if entry.kind == "dir":
            mode = 0o755
        elif entry.kind == "symlink":
            mode = 0o777
        else:
            mode = 0o755 if entry.mode & 0o111 else 0o644
        yield dataclasses.replace(entry, mode=mode)


def build_deps_layer(
    recipe: DepsRecipe,
    lock_path: Path,
    store: oci.BlobStore,
    cache_dir: Path,
    pip_args: list[str] | None = None,
) -> CachedLayer:
    """The dependency layer for `recipe`: from the cache, or installed and archived now."""
    if pip_args is None:
        pip_args = shlex.split(os.environ.get("TERRA_LAB_PIP_ARGS", ""))

    def build(work: Path) -> tar_layer.LayerDigest:
        lock_copy = work / "requirements.lock"
        lock_copy.write_text(recipe.lock_text)
        site = work / "site-packages"
        _progress(f"deps layer: pip install {lock_path} ({recipe.flavor}; once per lock)")
        pip_install(lock_copy, site, cache_dir, pip_args, recipe.flavor)
        normalize_site(site)
        _progress("deps layer: compiling bytecode")
        compile_bytecode(site)
        _progress("deps layer: writing the tar")
        entries = [*tar_layer.parent_dirs(SITE_PACKAGES)]
        return tar_layer.write_layer(
            [*entries, *normalized_entries(site, SITE_PACKAGES)], work / "layer.tar"
        )

    key = recipe.key().removeprefix("sha256:")
    details = {"lock": recipe.lock_hash(), "flavor": recipe.flavor}
    return cached_layer("deps", key, store, cache_dir, build, details)


def _progress(message: str) -> None:
    print(f"[image] {message}", file=sys.stderr, flush=True)
