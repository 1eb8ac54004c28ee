"""Helpers for launcher tests: throwaway git repositories, a tiny wheel and lock, a tiny base.

Everything here builds real artifacts (git commits, a wheel pip installs with hash checking,
a base layer in the cache the builder reads), so tests exercise the real code paths fast.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import pwd
import subprocess
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from launcher.image import base_layer, oci, tar_layer
from launcher.services import services

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
}


def real_home() -> Path:
    """The user's home from the password database (Bazel tests get a fake $HOME)."""
    return Path(pwd.getpwuid(os.getuid()).pw_dir)


@contextlib.contextmanager
def dev_services(*names: str) -> Iterator[dict[str, Any]]:
    """launcher/services' daemons `names` ("registry", "docker", "slurm") in the developer's
    state directory, started if not running; yields {name: service}. Afterwards only the
    ones started here are stopped (a developer's running ones stay)."""
    state = real_home() / ".cache" / "terra-lab" / "services"
    wanted = {name: getattr(services, name)(state) for name in names}
    started = [service for service in wanted.values() if service.start_reporting()[1]]
    try:
        yield wanted
    finally:
        for service in started:
            service.stop()


def git(repo: Path, *args: str) -> str:
    env = dict(os.environ, **GIT_ENV)
    result = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=env
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {result.stderr}")
    return result.stdout.strip()


def make_repo(root: Path, files: dict[str, str], executable: tuple[str, ...] = ()) -> Path:
    """A git repository with `files` committed on branch main."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        os.chmod(path, 0o755 if name in executable else 0o644)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def clone(source: Path, target: Path) -> Path:
    subprocess.run(
        ["git", "clone", "-q", str(source), str(target)], check=True, capture_output=True
    )
    return target


def clone_with_remote(source: Path, bare: Path, work: Path) -> Path:
    """A bare "remote" made from `source`, and a working clone of it (HEAD on origin/main)."""
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(source), str(bare)], check=True, capture_output=True
    )
    return clone(bare, work)


def pushed_launch_workspace(root: Path) -> Path:
    """The smallest checkout a launch accepts, pushed: this tree's launcher/clusters.yaml and
    an experiments/nano.py; the launch unit tests replace what would build or submit."""
    files = {
        ".gitignore": "runs/\n",
        "launcher/clusters.yaml": (Path(__file__).parent / "clusters.yaml").read_text(),
        "experiments/nano.py": "print('nano')\n",
    }
    source = make_repo(root / "source", files)
    return clone_with_remote(source, root / "origin.git", root / "work")


def make_wheel(directory: Path, name: str = "tinypkg", version: str = "1.0") -> Path:
    """A minimal pure-Python wheel with a module and a console script."""
    directory.mkdir(parents=True, exist_ok=True)
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VALUE = 42\n\ndef main():\n    print('{name}', VALUE)\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
        f"{dist_info}/entry_points.txt": f"[console_scripts]\n{name} = {name}:main\n",
    }
    records = []
    for path, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content.encode()).digest()).rstrip(b"=")
        records.append(f"{path},sha256={digest.decode()},{len(content.encode())}")
    records.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(records) + "\n"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, content in files.items():
            info = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            archive.writestr(info, content)
    return wheel


def lock_for(wheel: Path, name: str = "tinypkg", version: str = "1.0") -> str:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return f"{name}=={version} \\\n    --hash=sha256:{digest}\n    # via -r requirements.in\n"


def tiny_base_recipe() -> base_layer.BaseRecipe:
    """A recipe whose layer `seed_tiny_base` puts in the cache (no debootstrap needed)."""
    return base_layer.BaseRecipe(mirror="http://tiny.invalid/debian", suite="tiny")


def seed_tiny_base(cache_dir: Path, recipe: base_layer.BaseRecipe) -> str:
    """Store a few-file base layer for `recipe`, as if debootstrap had built it; its digest."""
    entries = [
        tar_layer.Entry("etc", "dir", 0o755),
        tar_layer.Entry("etc/passwd", "file", 0o644, data=b"root:x:0:0::/root:/bin/sh\n"),
        tar_layer.Entry("usr", "dir", 0o755),
    ]
    store = oci.BlobStore(cache_dir / "oci")
    layer = tar_layer.write_layer(entries, cache_dir / "tiny-base.tar")
    store.put_file(cache_dir / "tiny-base.tar", layer.digest)
    key = recipe.key().removeprefix("sha256:")
    (cache_dir / "recipes").mkdir(parents=True, exist_ok=True)
    (cache_dir / "recipes" / f"base-{key}.json").write_text(
        oci.canonical_json({"digest": layer.digest, "size": layer.size}).decode()
    )
    return layer.digest


def layer_members(store: oci.BlobStore, digest: str) -> dict[str, bytes | None]:
    """{name: content (None for non-files)} of a stored layer."""
    members: dict[str, bytes | None] = {}
    with tarfile.open(fileobj=io.BytesIO(store.read(digest))) as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isreg() else None
            members[member.name] = handle.read() if handle else None
    return members


def scratch_workspace(source: Path, root: Path, edits: dict[str, str] | None = None) -> Path:
    """A pushed clone holding `source`'s working tree (tracked and untracked, not ignored).

    End-to-end tests launch from it: it is clean, its HEAD is on origin/main, and it holds
    whatever is being developed in `source`. `edits` ({path: content}) are applied before
    the commit. Returns the clone (`root`/work; `root`/origin.git is its remote).
    """
    if Path(source).resolve().is_relative_to(Path(root).resolve()):
        raise ValueError(f"{source} lies inside the scratch folder {root}; it would be deleted")
    if root.exists():
        subprocess.run(["rm", "-rf", str(root)], check=True)
    tree = root / "tree"
    tree.mkdir(parents=True)
    listed = subprocess.run(
        ["git", "-C", str(source), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout
    for name in sorted({n.decode() for n in listed.split(b"\0") if n}):
        path = source / name
        if not path.exists() and not path.is_symlink():
            continue  # deleted in the working tree
        target = tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            target.symlink_to(os.readlink(path))
        else:
            target.write_bytes(path.read_bytes())
            os.chmod(target, path.stat().st_mode & 0o777)
    for name, content in (edits or {}).items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(content)
    git(tree, "init", "-q", "-b", "main")
    git(tree, "add", "-A")
    git(tree, "commit", "-q", "-m", "scratch copy of the working tree")
    return clone_with_remote(tree, root / "origin.git", root / "work")


def wait_for_job(backend, job_id: str, timeout_s: float):  # -> JobStatus
    """Poll `backend.status` until the job finishes or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    status = backend.status(job_id)
    while not status.state.finished and time.monotonic() < deadline:
        time.sleep(2)
        status = backend.status(job_id)
    return status


def job_report(backend, job_id: str, status, log_chars: int = 4000) -> str:
    """The job's state and the end of its log, for an assertion message."""
    log = backend.logs(job_id)
    return (
        f"job {job_id}: {status.state.value} {status.detail}\n--- log (end) ---\n{log[-log_chars:]}"
    )


def wait_while_job_runs(
    backend, job_id: str, done: Callable[[], bool], what: str, timeout_s: float,
    poll_s: float = 0.1, status_every_s: float = 1.0,
) -> None:  # fmt: skip
    """Poll `done()` until it holds; fail at once, with the job's log, once it cannot.

    A job that has ended (failed, cancelled, completed, or forgotten by the scheduler) will
    not produce `what` any more: waiting the full `timeout_s` for it only hides the log that
    says why. `done` is polled every `poll_s`, the scheduler every `status_every_s`.
    """
    deadline = time.monotonic() + timeout_s
    next_status = 0.0
    while not done():
        now = time.monotonic()
        if now >= next_status:
            status = backend.status(job_id)
            if status.state.finished or status.state.name == "UNKNOWN":
                if done():  # it came just before the end
                    return
                raise AssertionError(
                    f"the job ended before {what}; {job_report(backend, job_id, status)}"
                )
            next_status = now + status_every_s
        if now > deadline:
            status = backend.status(job_id)
            raise AssertionError(
                f"{what} did not come within {timeout_s:.0f} s; "
                + job_report(backend, job_id, status)
            )
        time.sleep(poll_s)


E2E_ROOT = Path("/tmp/terra-lab-e2e")
# A tiny nano run: 2 steps of 8 short instances, a checkpoint at every step.
NANO_SMOKE_OVERRIDES = (
    "--trainer.max_steps=2",
    "--trainer.callbacks.checkpointer.interval=1",
    "--data_loader.global_batch_size=8",
    "--data_loader.token_budget=300",
    "--data_loader.num_workers=1",
    "--train_module.microbatch_size=4",
)


def e2e_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The real user's environment for a launch from a test.

    Bazel gives tests a private $HOME; launches must use the user's caches instead (the base
    and dependency layers, the registry data, Bazel's output base for the gate's tests), or
    every run would rebuild 1.4 GB of layers.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TEST_", "BUILD_", "RUNFILES", "PYTHON", "XML_OUTPUT"))
        and key not in ("HOME", "TMPDIR", "XDG_CACHE_HOME", "JAVA_RUNFILES")
    }
    env["HOME"] = str(real_home())
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    env["WANDB_MODE"] = "offline"
    env.update(extra or {})
    return env


def run_experiment(
    workspace: Path, experiment: str, args: list[str], env: dict[str, str], timeout_s: float = 900
) -> subprocess.CompletedProcess[str]:
    """`<experiment> <args>` the way `bazel run //experiments:<experiment> --` runs it."""
    return run_program(workspace, f"experiments/{experiment}.py", args, env, timeout_s)


def run_program(
    workspace: Path, program: str, args: list[str], env: dict[str, str], timeout_s: float = 900
) -> subprocess.CompletedProcess[str]:
    """The Python program `program` (a path in `workspace`, e.g. an experiment or a study)
    with `args`, the way `bazel run` runs its binary from that checkout."""
    import sys

    return subprocess.run(
        [sys.executable, program, *args],
        cwd=workspace,
        env=dict(env, BUILD_WORKSPACE_DIRECTORY=str(workspace), PYTHONPATH=str(workspace)),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def shutdown_bazel(workspace: Path, env: dict[str, str]) -> None:
    """Stop the Bazel server the gate started for `workspace` (it would idle for hours)."""
    if (workspace / "tools" / "bazel").exists():
        subprocess.run(
            [str(workspace / "tools" / "bazel"), "shutdown"],
            cwd=workspace,
            env=env,
            capture_output=True,
            timeout=120,
        )
