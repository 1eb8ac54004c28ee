"""Layer 3, the application: exactly the files tracked in one commit, under /app.

The layer is read from git's object database (`git ls-tree -r` + `git cat-file --batch`),
not from the working tree, so untracked files, ignored files (runs/, caches, local
secrets), uncommitted edits and `.git` itself cannot get in, and the layer's bytes are a
function of the commit's tree: git's mode (0644 or 0755), a root owner, mtime 0.

Two guards against shipping credentials: a tracked file whose name says it holds keys
(`.env`, `.netrc`, `*.pem`, `id_rsa`, ...) stops the build, and so does a tracked file that
contains the value of a secret variable set in the builder's environment (WANDB_API_KEY, ...).
Secrets reach jobs as environment variables at run time, never through a layer.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import subprocess
from pathlib import Path

from launcher.image import tar_layer

APP_DIR = "app"
SECRET_FILE_PATTERNS = (
    ".env",
    ".env.*",
    ".netrc",
    ".git-credentials",
    ".pypirc",
    ".dockercfg",
    "*.pem",
    "*.p12",
    "*.pfx",
    "id_rsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "credentials.json",
)
# Variables whose values must never appear in an image (the launcher passes them at run time).
SECRET_ENV_VARS = ("WANDB_API_KEY", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN")


class SecretInTreeError(RuntimeError):
    """A tracked file looks like, or contains, a credential."""


@dataclasses.dataclass(frozen=True)
class TrackedFile:
    path: str
    mode: int  # 0o644, 0o755, or 0o777 for a symlink
    object_id: str


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {result.stderr.strip()}")
    return result.stdout


def resolve_commit(repo: Path, revision: str = "HEAD") -> str:
    """The full sha of `revision`."""
    return git(repo, "rev-parse", "--verify", f"{revision}^{{commit}}").strip()


def tracked_files(repo: Path, commit: str) -> list[TrackedFile]:
    """Every blob and symlink of `commit`'s tree (submodules are refused)."""
    raw = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "-r", "-z", "--full-tree", commit],
        capture_output=True,
        check=True,
    ).stdout
    files = []
    for record in raw.split(b"\0"):
        if not record:
            continue
        meta, _, path_bytes = record.partition(b"\t")
        mode, kind, object_id = meta.decode().split()
        path = path_bytes.decode("utf-8", errors="surrogateescape")
        if kind == "commit":
            raise RuntimeError(
                f"{path} is a git submodule; the image holds one commit's files, so vendor it"
            )
        modes = {"100644": 0o644, "100755": 0o755, "120000": 0o777}
        if mode not in modes:
            raise RuntimeError(f"{path}: unsupported git file mode {mode}")
        files.append(TrackedFile(path, modes[mode], object_id))
    return files


def read_blobs(repo: Path, object_ids: list[str]) -> dict[str, bytes]:
    """Contents of `object_ids`, read through one `git cat-file --batch` process."""
    unique = sorted(set(object_ids))
    request = "".join(f"{object_id}\n" for object_id in unique).encode()
    output = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "--batch"],
        input=request,
        capture_output=True,
        check=True,
    ).stdout
    blobs: dict[str, bytes] = {}
    offset = 0
    for object_id in unique:
        header_end = output.index(b"\n", offset)
        found_id, kind, size = output[offset:header_end].decode().split()
        if found_id != object_id or kind != "blob":
            raise RuntimeError(f"git cat-file returned {found_id} {kind} for {object_id}")
        start = header_end + 1
        blobs[object_id] = output[start : start + int(size)]
        offset = start + int(size) + 1  # content is followed by a newline
    return blobs


def secret_problems(files: list[TrackedFile], blobs: dict[str, bytes]) -> list[str]:
    """Credential-looking tracked files, and tracked files holding a secret variable's value."""
    problems = []
    for tracked in files:
        name = tracked.path.rsplit("/", 1)[-1]
        if any(fnmatch.fnmatch(name, pattern) for pattern in SECRET_FILE_PATTERNS):
            problems.append(
                f"{tracked.path} is tracked and looks like a credential file; remove it from git "
                "(secrets reach jobs as environment variables at run time)"
            )
    for variable in SECRET_ENV_VARS:
        value = os.environ.get(variable, "")
        if len(value) < 8:
            continue
        needle = value.encode()
        for tracked in files:
            if needle in blobs[tracked.object_id]:
                problems.append(
                    f"{tracked.path} contains the value of ${variable}; remove it from the commit"
                )
    return problems


def commit_secret_problems(repo: Path, commit: str) -> list[str]:
    """`secret_problems` of a commit (the launch gate asks before running any test)."""
    files = tracked_files(repo, commit)
    return secret_problems(files, read_blobs(repo, [tracked.object_id for tracked in files]))


def check_no_secrets(files: list[TrackedFile], blobs: dict[str, bytes]) -> None:
    """Raise SecretInTreeError naming every problem of `secret_problems`."""
    if problems := secret_problems(files, blobs):
        raise SecretInTreeError("; ".join(problems))


def app_entries(repo: Path, commit: str) -> list[tar_layer.Entry]:
    """Layer entries for `commit`: its files under app/, with their parent directories."""
    files = tracked_files(repo, commit)
    blobs = read_blobs(repo, [tracked.object_id for tracked in files])
    check_no_secrets(files, blobs)
    entries: dict[str, tar_layer.Entry] = {APP_DIR: tar_layer.Entry(APP_DIR, "dir", 0o755)}
    for tracked in files:
        path = f"{APP_DIR}/{tracked.path}"
        parts = path.split("/")
        for depth in range(2, len(parts)):
            parent = "/".join(parts[:depth])
            entries.setdefault(parent, tar_layer.Entry(parent, "dir", 0o755))
        content = blobs[tracked.object_id]
        if tracked.mode == 0o777:
            target = content.decode("utf-8", errors="surrogateescape")
            entries[path] = tar_layer.Entry(path, "symlink", 0o777, target=target)
        else:
            entries[path] = tar_layer.Entry(path, "file", tracked.mode, data=content)
    # Sorting whole paths bytewise puts every directory before its children.
    return [entries[path] for path in sorted(entries, key=os.fsencode)]


def build_app_layer(repo: Path, commit: str, out_path: Path) -> tar_layer.LayerDigest:
    return tar_layer.write_layer(app_entries(repo, commit), out_path)
