"""Run an image by digest on this machine: Docker if an engine answers, else bubblewrap.

    python3 run_image.py --registry http://127.0.0.1:5000 --image terra-lab@sha256:... \\
        --cache ~/.cache/terra-lab/image-runtime --mount /runs:/app/runs \\
        --pass-env WANDB_API_KEY --env TERRA_LAB_NPROC_PER_NODE=2 -- nano my_run slurm

Standard library only and a single file: the Slurm backend copies it next to each job's
batch script, so a compute node needs nothing but python3 and bwrap (or docker).

Daemonless path: the manifest, config and layers are fetched by digest and each verified
against its sha256; layers are unpacked into a cache of root filesystems keyed by OCI
chain id (the image's layers up to k). A new chain starts as a hard-link copy of its parent
chain, and unpacking never writes into an existing inode (it unlinks and recreates), so a
code-only image costs one small layer, not a fresh 1.4 GB tree. The rootfs is then mounted
read-only by bwrap, with the image's user, environment, working directory and entrypoint;
/tmp and $HOME are tmpfs, and the run root is bind-mounted read-write.

Secrets (`--pass-env NAME`) travel from this process's environment to the job's, never on
a command line (other users can read /proc/<pid>/cmdline) and never into a layer.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

MANIFEST_ACCEPT = (
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json"
)
LAYER_MEDIA_TYPES = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.diff.tar",
)
_CHUNK = 1 << 20
# The job's exit code when this node can run no image (as a shell's "command not found").
MISSING_RUNTIME_EXIT_CODE = 127


# -- fetching, by digest, verified ---------------------------------------------------------


def _get(url: str, accept: str = "", attempts: int = 5) -> urllib.request.addinfourl:
    delay = 0.5
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
        try:
            return urllib.request.urlopen(request, timeout=300)
        except urllib.error.HTTPError as error:
            if error.code < 500 or attempt == attempts:
                raise RuntimeError(f"GET {url}: HTTP {error.code}") from error
        except (urllib.error.URLError, OSError) as error:
            if attempt == attempts:
                raise RuntimeError(f"GET {url}: {error}") from error
        time.sleep(delay)
        delay = min(delay * 2, 8.0)
    raise AssertionError("unreachable")


def fetch_json(registry: str, repository: str, kind: str, digest: str) -> tuple[dict, bytes]:
    """A manifest or config blob, checked against its digest."""
    url = f"{registry}/v2/{repository}/{kind}/{digest}"
    with _get(url, MANIFEST_ACCEPT if kind == "manifests" else "") as response:
        body = response.read()
    actual = "sha256:" + hashlib.sha256(body).hexdigest()
    if actual != digest:
        raise RuntimeError(f"{url} has digest {actual}, expected {digest}")
    return json.loads(body), body


def _config_digest(registry: str, repository: str, digest: str) -> tuple[dict, str]:
    manifest, _ = fetch_json(registry, repository, "manifests", digest)
    return manifest, manifest["config"]["digest"]


def fetch_blob(registry: str, repository: str, digest: str, dest: Path) -> None:
    url = f"{registry}/v2/{repository}/blobs/{digest}"
    sha = hashlib.sha256()
    with _get(url) as response, open(dest, "wb") as out:
        while chunk := response.read(_CHUNK):
            sha.update(chunk)
            out.write(chunk)
    if "sha256:" + sha.hexdigest() != digest:
        dest.unlink()
        raise RuntimeError(f"{url}: downloaded bytes do not match {digest}")


# -- unpacking layers into chained root filesystems ----------------------------------------


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI ChainIDs: chain[0] = diff_id[0]; chain[k] = sha256(chain[k-1] + " " + diff_id[k])."""
    chains: list[str] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
        else:
            text = f"{chains[-1]} {diff_id}".encode()
            chains.append("sha256:" + hashlib.sha256(text).hexdigest())
    return chains


def _remove(path: str) -> None:
    if os.path.islink(path) or not os.path.isdir(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    else:
        shutil.rmtree(path)


def _safe_path(root: str, name: str) -> str | None:
    """Host path for a member name, or None if it would leave `root` (.., symlinked parents)."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    parent = os.path.realpath(os.path.join(root, *parts[:-1]))
    if parent != root and not parent.startswith(root + os.sep):
        return None
    return os.path.join(parent, parts[-1])


def apply_layer(layer_tar: Path, root: Path) -> None:
    """Unpack one layer onto `root`, honouring OCI whiteouts; never writes an existing inode."""
    real_root = os.path.realpath(root)
    as_root = os.geteuid() == 0
    directory_modes: list[tuple[str, int]] = []
    with tarfile.open(layer_tar, mode="r:") as tar:
        for member in tar:
            path = _safe_path(real_root, member.name)
            if path is None:
                raise RuntimeError(f"{layer_tar.name}: refusing member {member.name!r}")
            base = os.path.basename(path)
            if base == ".wh..wh..opq":
                parent = os.path.dirname(path)
                for child in os.listdir(parent) if os.path.isdir(parent) else []:
                    _remove(os.path.join(parent, child))
                continue
            if base.startswith(".wh."):
                _remove(os.path.join(os.path.dirname(path), base[len(".wh.") :]))
                continue
            if member.isdir():
                if os.path.lexists(path) and not os.path.isdir(path):
                    _remove(path)
                os.makedirs(path, exist_ok=True)
                # Read-only directories (0555) would block their own children: set modes last.
                directory_modes.append((path, member.mode))
                if as_root:
                    os.lchown(path, member.uid, member.gid)
                continue
            if member.ischr() or member.isblk() or member.isfifo():
                continue  # runtimes provide /dev
            if os.path.lexists(path):
                _remove(path)  # unlink, so a hard-linked parent chain stays untouched
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if member.issym():
                os.symlink(member.linkname, path)
            elif member.islnk():
                target = _safe_path(real_root, member.linkname)
                if target is None:
                    raise RuntimeError(
                        f"{layer_tar.name}: refusing hard link to {member.linkname!r}"
                    )
                os.link(target, path)
                continue
            else:
                source = tar.extractfile(member)
                assert source is not None
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
            if as_root:
                os.lchown(path, member.uid, member.gid)
            if not member.issym():
                os.chmod(path, member.mode)
    for path, mode in reversed(directory_modes):
        # Without root, keep owner write/search so the next chain can be unpacked on top.
        os.chmod(path, mode if as_root else mode | stat.S_IWUSR | stat.S_IXUSR)


def unpack_image(
    registry: str, repository: str, manifest_digest: str, cache: Path
) -> tuple[Path, dict]:
    """(rootfs, image config) for an image, unpacking only layers not cached yet."""
    cache.mkdir(parents=True, exist_ok=True)
    manifest, _ = fetch_json(registry, repository, "manifests", manifest_digest)
    config, _ = fetch_json(registry, repository, "blobs", manifest["config"]["digest"])
    diff_ids = config["rootfs"]["diff_ids"]
    layers = manifest["layers"]
    if len(layers) != len(diff_ids):
        raise RuntimeError(f"{manifest_digest}: {len(layers)} layers but {len(diff_ids)} diff_ids")
    chains_dir = cache / "chains"
    chains_dir.mkdir(exist_ok=True)
    previous: Path | None = None
    for layer, diff_id, chain in zip(layers, diff_ids, chain_ids(diff_ids), strict=True):
        if layer["mediaType"] not in LAYER_MEDIA_TYPES:
            raise RuntimeError(
                f"layer media type {layer['mediaType']} is not an uncompressed tar; "
                "terra-lab images use uncompressed layers"
            )
        name = chain.removeprefix("sha256:")
        rootfs = chains_dir / name
        with open(chains_dir / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # jobs on one node share the cache
            if not (chains_dir / f"{name}.done").exists():
                work = Path(tempfile.mkdtemp(prefix=f"{name[:12]}-", dir=chains_dir))
                try:
                    staging = work / "rootfs"
                    if previous is None:
                        staging.mkdir()
                    else:
                        subprocess.run(["cp", "-a", "-l", str(previous), str(staging)], check=True)
                    blob = work / "layer"
                    _log(f"fetching layer {layer['digest'][:19]} ({layer['size'] / 1e6:.1f} MB)")
                    fetch_blob(registry, repository, layer["digest"], blob)
                    _check_diff_id(blob, diff_id)
                    apply_layer(blob, staging)
                    if rootfs.exists():
                        shutil.rmtree(rootfs)
                    os.rename(staging, rootfs)
                    (chains_dir / f"{name}.done").write_text(layer["digest"] + "\n")
                finally:
                    shutil.rmtree(work, ignore_errors=True)
        previous = rootfs
    assert previous is not None
    return previous, config


def _check_diff_id(blob: Path, diff_id: str) -> None:
    sha = hashlib.sha256()
    with open(blob, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
    if "sha256:" + sha.hexdigest() != diff_id:
        raise RuntimeError(f"layer content does not match diff_id {diff_id}")


# -- running -------------------------------------------------------------------------------


def docker_available(docker_host: str | None) -> bool:
    if shutil.which("docker") is None:
        return False
    env = dict(os.environ, **({"DOCKER_HOST": docker_host} if docker_host else {}))
    try:
        result = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            env=env,
            capture_output=True,
            timeout=10,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def _gpu_binds() -> list[str]:
    """bwrap arguments exposing the host's NVIDIA devices and driver libraries."""
    args = ["--tmpfs", "/usr/local/nvidia"]
    for device in sorted(Path("/dev").glob("nvidia*")):
        args += ["--dev-bind", str(device), str(device)]
    listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        if "=>" not in line:
            continue
        library = line.split("=>")[1].strip()
        name = os.path.basename(library)
        if name.startswith(("libcuda.so", "libnvidia-", "libnvcuvid")) and "x86-64" in line:
            args += ["--ro-bind", library, f"/usr/local/nvidia/lib64/{name}"]
    return args


def bwrap_command(
    rootfs: Path,
    config: dict,
    args: list[str],
    mounts: list[tuple[str, str, bool]],
    gpus: int,
) -> list[str]:
    image = config.get("config", {})
    user = image.get("User", "")
    uid, _, gid = user.partition(":")
    env = dict(entry.split("=", 1) for entry in image.get("Env", []))
    command = ["bwrap", "--unshare-pid", "--unshare-ipc", "--die-with-parent"]
    if uid:
        command += ["--unshare-user", "--uid", uid, "--gid", gid or uid]
    command += ["--ro-bind", str(rootfs), "/", "--proc", "/proc", "--dev", "/dev"]
    command += ["--tmpfs", "/tmp", "--tmpfs", "/dev/shm"]
    if home := env.get("HOME"):
        command += ["--tmpfs", home]
    for host_file in ("/etc/resolv.conf", "/etc/hosts"):
        # A read-only rootfs cannot grow mount points: bind only over files the image has.
        if os.path.exists(host_file) and os.path.lexists(f"{rootfs}{host_file}"):
            command += ["--ro-bind", host_file, host_file]
    for host, inside, read_only in mounts:
        command += ["--ro-bind" if read_only else "--bind", host, inside]
    if gpus:
        command += _gpu_binds()
    command += ["--chdir", image.get("WorkingDir") or "/"]
    return command + ["--", *(image.get("Entrypoint") or []), *(args or image.get("Cmd") or [])]


def image_environment(
    config: dict, extra: dict[str, str], passed: list[str], gpus: int
) -> dict[str, str]:
    """The job's environment: the image's Env, then --env, then --pass-env values."""
    env = dict(entry.split("=", 1) for entry in config.get("config", {}).get("Env", []))
    env.update(extra)
    if gpus and "LD_LIBRARY_PATH" not in env:
        env["LD_LIBRARY_PATH"] = "/usr/local/nvidia/lib64"  # where _gpu_binds puts the driver
    for name in passed:
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def run_docker(
    reference: str,
    args: list[str],
    mounts: list[tuple[str, str, bool]],
    extra_env: dict[str, str],
    passed: list[str],
    gpus: int,
    name: str,
    docker_host: str | None,
) -> int:
    env = dict(os.environ, **({"DOCKER_HOST": docker_host} if docker_host else {}))
    _log(f"docker pull {reference}")
    subprocess.run(["docker", "pull", "-q", reference], env=env, check=True)
    command = ["docker", "run", "--rm", "--init", "--name", name, "--network", "host"]
    command += ["--shm-size", "1g"]
    if os.geteuid() != 0:
        command += ["--user", f"{os.getuid()}:{os.getgid()}"]
    for host, inside, read_only in mounts:
        command += ["-v", f"{host}:{inside}{':ro' if read_only else ''}"]
    for key, value in extra_env.items():
        command += ["-e", f"{key}={value}"]
    for secret in passed:
        if secret in os.environ:
            command += ["-e", secret]  # name only: docker reads the value from its environment
    if gpus:
        command += ["--gpus", "all"]
    command += [reference, *args]

    def stop(signum: int, frame: object) -> None:
        subprocess.run(["docker", "stop", "-t", "30", name], env=env, capture_output=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return subprocess.call(command, env=env)


def run_bwrap(
    registry: str,
    repository: str,
    digest: str,
    cache: Path,
    args: list[str],
    mounts: list[tuple[str, str, bool]],
    extra_env: dict[str, str],
    passed: list[str],
    gpus: int,
) -> int:
    rootfs, config = unpack_image(registry, repository, digest, cache)
    command = bwrap_command(rootfs, config, args, mounts, gpus)
    env = image_environment(config, extra_env, passed, gpus)
    _log(f"bwrap on {rootfs}")
    process = subprocess.Popen(command, env=env)

    def forward(signum: int, frame: object) -> None:
        process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return process.wait()


def _log(message: str) -> None:
    print(f"[run_image] {message}", file=sys.stderr, flush=True)


def own_writable(paths: list[Path], uid: int, gid: int) -> None:
    """Give the job's writable folders to the uid the job writes as on the host.

    Docker run by root writes as the image's user (1000); bwrap maps the image's user to
    the caller. A run requeued under the other runtime must still be able to write its
    checkpoints, so ownership is fixed (recursively) whenever it does not match.
    """
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
        if (path.stat().st_uid, path.stat().st_gid) == (uid, gid):
            continue
        _log(f"chown -R {uid}:{gid} {path}")
        for directory, dirs, files in os.walk(path):
            os.lchown(directory, uid, gid)
            for name in dirs + files:
                os.lchown(os.path.join(directory, name), uid, gid)


def parse_mount(text: str) -> tuple[str, str, bool]:
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "ro"):
        raise argparse.ArgumentTypeError(f"--mount wants HOST:CONTAINER[:ro], got {text!r}")
    return parts[0], parts[1], len(parts) == 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", required=True, help="http(s)://host[:port]")
    parser.add_argument("--image", required=True, help="repository@sha256:...")
    parser.add_argument("--cache", required=True, type=Path)
    parser.add_argument("--runtime", choices=["auto", "docker", "bwrap"], default="auto")
    parser.add_argument("--docker-host", default=None)
    parser.add_argument("--mount", action="append", default=[], type=parse_mount)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE")
    parser.add_argument("--pass-env", action="append", default=[], help="NAME (value from here)")
    parser.add_argument("--gpus", type=int, default=0)
    parser.add_argument("--name", default=f"terra-{os.getpid()}")
    parser.add_argument("--exit-code-file", type=Path, default=None)
    parser.add_argument(
        "--writable", action="append", default=[], type=Path, help="host folder the job writes"
    )
    parser.add_argument("args", nargs="*")
    options = parser.parse_args(argv)
    repository, _, digest = options.image.partition("@")
    if not digest.startswith("sha256:"):
        parser.error("--image must name a digest: repository@sha256:...")
    extra_env = dict(item.split("=", 1) for item in options.env)
    runtime = options.runtime
    if runtime == "auto":
        runtime = "docker" if docker_available(options.docker_host) else "bwrap"
    _log(f"runtime {runtime}")
    if runtime == "bwrap" and shutil.which("bwrap") is None:
        # One line and an exit code the backends report, not a traceback from the runner.
        _log(
            f"no Docker engine answers and bwrap is not installed on {socket.gethostname()}; "
            "install bubblewrap (sudo apt-get install -y bubblewrap) or start Docker"
        )
        return _finish(options.exit_code_file, MISSING_RUNTIME_EXIT_CODE)
    for host, _, read_only in options.mount:
        if not read_only:
            Path(host).mkdir(parents=True, exist_ok=True)
    uid, gid = os.getuid(), os.getgid()
    if runtime == "docker" and os.geteuid() == 0:
        _, config_digest = _config_digest(options.registry, repository, digest)
        config, _ = fetch_json(options.registry, repository, "blobs", config_digest)
        user = config.get("config", {}).get("User", "0:0")
        uid = int(user.partition(":")[0] or 0)
        gid = int(user.partition(":")[2] or uid)
    own_writable(options.writable, uid, gid)
    if runtime == "docker":
        host = options.registry.split("://", 1)[1]
        code = run_docker(
            f"{host}/{options.image}",
            options.args,
            options.mount,
            extra_env,
            options.pass_env,
            options.gpus,
            options.name,
            options.docker_host,
        )
    else:
        code = run_bwrap(
            options.registry,
            repository,
            digest,
            options.cache,
            options.args,
            options.mount,
            extra_env,
            options.pass_env,
            options.gpus,
        )
    return _finish(options.exit_code_file, code)


def _finish(exit_code_file: Path | None, code: int) -> int:
    if exit_code_file:
        exit_code_file.write_text(f"{code}\n")
    _log(f"exit code {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
