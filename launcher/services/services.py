"""Dev services on this machine: an OCI registry, a Docker engine, a one-node Slurm cluster.

    ./tools/bazel run //tools/services -- start registry|docker|slurm|all [--state_dir=DIR]
    ./tools/bazel run //tools/services -- stop   registry|docker|slurm|all
    ./tools/bazel run //tools/services -- status [registry|docker|slurm|all]
    ./tools/bazel run //tools/services -- env    # export lines: DOCKER_HOST, SLURM_CONF, ...

Each service installs its Debian packages on first use (as root; launcher/services/packages.py),
keeps all its state under one directory (default `${XDG_CACHE_HOME:-~/.cache}/terra-lab/
services/<service>`), records one pid file per daemon and is stopped by those pids only.
`start` on a running service and `stop` on a stopped one do nothing; both hold an exclusive
lock on `<state>/service.lock`, so concurrent starts leave one daemon. Everything listens on
loopback or on a Unix socket inside the state directory:

- registry: `docker-registry serve` (distribution 2.8), http://127.0.0.1:5000;
- docker: `dockerd` on unix://<state>/docker.sock, no bridge and no iptables rules (the
  launcher runs containers with --network host, like the daemonless runtime);
- slurm: `munged` (socket in the state directory), `slurmctld` and `slurmd` for one node
  named localhost at 127.0.0.1 with two partitions, `debug` (default) and `batch`, both on
  that node, so ordered partition lists can be tried; `SLURM_CONF` points clients at it.
  The node runs jobs' images, so bubblewrap is installed with it (used without Docker).
"""

from __future__ import annotations

import abc
import dataclasses
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from launcher.services import packages, process

DEFAULT_REGISTRY_ADDRESS = "127.0.0.1:5000"
DEFAULT_SLURMCTLD_PORT = 6817
DEFAULT_SLURMD_PORT = 6818
SERVICE_NAMES = ("registry", "docker", "slurm")


def default_state_root() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "terra-lab" / "services"


def _check_loopback(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        raise ValueError(f"dev services listen on loopback only; got address {address!r}")
    return host.strip("[]"), int(port)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class _Service(abc.ABC):
    """`start` and `stop` of a service run under an exclusive lock in its state directory.

    Launches on a fresh machine start services concurrently (two experiments launched at
    once, an e2e test beside a developer's launch); without the lock both would find no daemon
    and both start one, leaving a pid file that names the loser and an orphan holding the
    port. Under it, the second caller waits, then finds the first one's daemon running.
    """

    state_dir: Path

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "service.lock"

    def start(self) -> str:
        """Start the service unless it runs already (idempotent); where clients reach it."""
        return self.start_reporting()[0]

    def start_reporting(self) -> tuple[str, bool]:
        """`start`, and whether this call started the daemons: decided under the lock, so of
        two concurrent starts exactly one reports that it started them."""
        with process.exclusive_lock(self.lock_file):
            was_up = self.running() and self.healthy()
            return self._start(), not was_up

    def stop(self) -> bool:
        """Stop the daemons this service started; True if any was running."""
        if not self.state_dir.exists():
            return False  # never started here (and the lock would create the folder)
        with process.exclusive_lock(self.lock_file):
            return self._stop()

    @abc.abstractmethod
    def _start(self) -> str:
        """`start` without the lock."""

    @abc.abstractmethod
    def _stop(self) -> bool:
        """`stop` without the lock."""


@dataclasses.dataclass
class Registry(_Service):
    """docker-registry (CNCF distribution v2) storing blobs under `<state>/data`."""

    state_dir: Path
    address: str = DEFAULT_REGISTRY_ADDRESS

    program = "docker-registry"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "registry.pid"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def running(self) -> bool:
        return process.running_pid(self.pid_file, self.program) is not None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v2/", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _start(self) -> str:
        if self.running() and self.healthy():
            return self.url
        packages.ensure_installed({"registry": "docker-registry"})
        host, port = _check_loopback(self.address)
        if _port_open(host, port):
            raise RuntimeError(
                f"{self.address} is already in use by a process we did not start; stop it or "
                "choose another registry address (--registry_address / clusters.yaml)"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = self.state_dir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {self.state_dir / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.address}\n"
        )
        process.start_daemon(
            [process.program(self.program), "serve", str(config)],
            self.pid_file,
            self.state_dir / "registry.log",
            ready=self.healthy,
            timeout_s=30,
        )
        return self.url

    def _stop(self) -> bool:
        return process.stop_daemon(self.pid_file, self.program)


def docker_engine_answers(docker_host: str, timeout_s: float = 5.0) -> bool:
    """Whether a Docker engine answers its API's ping at `docker_host` (unix://, tcp://).

    Asked through the docker SDK, the engine's own client library: it speaks the API over
    the Unix socket or TCP and negotiates the API version, where the docker CLI would need
    to be installed and its text output parsed.
    """
    import docker  # the SDK pulls in requests: only for the few callers that ask

    client = None
    try:
        client = docker.DockerClient(base_url=docker_host, timeout=timeout_s)
        return bool(client.ping())
    except (docker.errors.DockerException, OSError):  # requests' errors are OSErrors
        return False
    finally:
        if client is not None:
            client.close()


@dataclasses.dataclass
class Docker(_Service):
    """dockerd with its data, exec root and API socket inside the state directory."""

    state_dir: Path

    program = "dockerd"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "dockerd.pid"

    @property
    def socket_path(self) -> Path:
        return self.state_dir / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket_path}"

    def running(self) -> bool:
        return process.running_pid(self.pid_file, self.program) is not None

    def healthy(self) -> bool:
        return self.socket_path.exists() and docker_engine_answers(self.docker_host)

    def _start(self) -> str:
        if self.running() and self.healthy():
            return self.docker_host
        packages.ensure_installed({"dockerd": "docker.io"})
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if len(str(self.state_dir / "run" / "containerd" / "containerd.sock.ttrpc")) > 100:
            raise ValueError(
                f"state directory {self.state_dir} is too deep for Docker's Unix sockets "
                "(108-byte limit); pass a shorter --state_dir"
            )
        self.socket_path.unlink(missing_ok=True)
        process.start_daemon(
            [
                process.program(self.program),
                f"--data-root={self.state_dir / 'data'}",
                f"--exec-root={self.state_dir / 'run'}",
                f"--pidfile={self.state_dir / 'dockerd.internal.pid'}",
                f"--host={self.docker_host}",
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip=127.0.0.1",
            ],
            self.pid_file,
            self.state_dir / "dockerd.log",
            ready=self.healthy,
            timeout_s=60,
        )
        return self.docker_host

    def _stop(self) -> bool:
        return process.stop_daemon(self.pid_file, self.program, timeout_s=60)


@dataclasses.dataclass
class Slurm(_Service):
    """munged + slurmctld + slurmd: a one-node cluster named `terra-dev`."""

    state_dir: Path
    slurmctld_port: int = DEFAULT_SLURMCTLD_PORT
    slurmd_port: int = DEFAULT_SLURMD_PORT

    @property
    def conf(self) -> Path:
        return self.state_dir / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.state_dir / "munge" / "socket" / "munge.socket"

    def _pid(self, daemon: str) -> Path:
        return self.state_dir / f"{daemon}.pid"

    def running(self) -> bool:
        return all(
            process.running_pid(self._pid(daemon), daemon) is not None
            for daemon in ("munged", "slurmctld", "slurmd")
        )

    def env(self) -> dict[str, str]:
        path = os.environ.get("PATH", "/usr/bin:/bin")
        return dict(os.environ, SLURM_CONF=str(self.conf), PATH=f"{path}:/usr/sbin:/sbin")

    def node_state(self) -> str:
        result = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%T"], env=self.env(), capture_output=True, text=True
        )
        return (
            result.stdout.strip().splitlines()[0]
            if result.returncode == 0 and result.stdout
            else ""
        )

    def healthy(self) -> bool:
        state = self.node_state().rstrip("*~#")
        return state in ("idle", "mixed", "allocated", "completing")

    def _write_conf(self) -> None:
        cpus = os.cpu_count() or 1
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
        s = self.state_dir
        memory_mb = max(memory_mb - 512, 256)
        self.conf.write_text(
            f"""# Generated by launcher/services/services.py: a one-node dev cluster on loopback.
ClusterName=terra-dev
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={self.slurmctld_port}
SlurmdPort={self.slurmd_port}
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
StateSaveLocation={s / "state"}
SlurmdSpoolDir={s / "spool"}
SlurmctldPidFile={s / "slurmctld.internal.pid"}
SlurmdPidFile={s / "slurmd.internal.pid"}
SlurmctldLogFile={s / "slurmctld.log"}
SlurmdLogFile={s / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={s / "jobcomp.txt"}
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=600
MpiDefault=none
PlugStackConfig={s / "plugstack.conf"}
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=batch Nodes=localhost Default=NO MaxTime=INFINITE State=UP
"""
        )
        (s / "plugstack.conf").write_text("")

    def _start_munge(self) -> None:
        munge_dir = self.state_dir / "munge"
        key = munge_dir / "munge.key"
        pid_file = self._pid("munged")
        if process.running_pid(pid_file, "munged") is not None:
            return
        munge_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(munge_dir, 0o700)
        self.munge_socket.parent.mkdir(exist_ok=True)
        os.chmod(self.munge_socket.parent, 0o755)
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        # Root runs munged here: the state directory lies in root's home, which the munge
        # user cannot reach; --force accepts a socket path that only root can traverse
        # (only root's jobs use this cluster).
        process.start_daemon(
            [
                process.program("munged"),
                "--foreground",
                "--force",
                f"--key-file={key}",
                f"--socket={self.munge_socket}",
                f"--pid-file={munge_dir / 'munged.internal.pid'}",
                f"--log-file={munge_dir / 'munged.log'}",
                f"--seed-file={munge_dir / 'munged.seed'}",
            ],
            pid_file,
            munge_dir / "munged.out",
            ready=self.munge_socket.exists,
            timeout_s=20,
        )

    def _start(self) -> str:
        if self.running() and self.healthy():
            return str(self.conf)
        # The node is this machine and runs each job's image through run_image.py; without a
        # Docker engine that is bubblewrap, so the node gets it with the daemons.
        packages.ensure_installed(
            {"slurmctld": "slurm-wlm", "munged": "munge", "jobs' sandbox": "bubblewrap"}
        )
        if os.geteuid() != 0:
            raise RuntimeError("the dev Slurm cluster runs its daemons as root; start it as root")
        for port in (self.slurmctld_port, self.slurmd_port):
            daemon_running = any(
                process.running_pid(self._pid(d), d) for d in ("slurmctld", "slurmd")
            )
            if _port_open("127.0.0.1", port) and not daemon_running:
                raise RuntimeError(
                    f"port {port} on 127.0.0.1 is used by a process we did not start"
                )
        for sub in ("state", "spool"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        self._write_conf()
        self._start_munge()
        env = self.env()
        if process.running_pid(self._pid("slurmctld"), "slurmctld") is None:
            process.start_daemon(
                [process.program("slurmctld"), "-D", "-i", "-f", str(self.conf)],
                self._pid("slurmctld"),
                self.state_dir / "slurmctld.out",
                ready=lambda: (
                    subprocess.run(
                        ["scontrol", "ping"], env=env, capture_output=True, text=True
                    ).stdout.count("UP")
                    > 0
                ),
                timeout_s=30,
                env=env,
            )
        if process.running_pid(self._pid("slurmd"), "slurmd") is None:
            process.start_daemon(
                [process.program("slurmd"), "-D", "-f", str(self.conf), "-N", "localhost"],
                self._pid("slurmd"),
                self.state_dir / "slurmd.out",
                ready=self.healthy,
                timeout_s=30,
                env=env,
            )
        deadline = time.monotonic() + 30
        while not self.healthy():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Slurm node did not become idle: {self.node_state()!r}")
            time.sleep(0.3)
        return str(self.conf)

    def _stop(self) -> bool:
        stopped = False
        for daemon in ("slurmd", "slurmctld", "munged"):
            stopped |= process.stop_daemon(self._pid(daemon), daemon)
        return stopped


def registry(state_root: Path | None = None, address: str = DEFAULT_REGISTRY_ADDRESS) -> Registry:
    return Registry((state_root or default_state_root()) / "registry", address)


def docker(state_root: Path | None = None) -> Docker:
    return Docker((state_root or default_state_root()) / "docker")


def slurm(state_root: Path | None = None) -> Slurm:
    return Slurm((state_root or default_state_root()) / "slurm")
