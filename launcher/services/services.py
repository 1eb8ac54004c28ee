"""Dev services on this machine: an OCI registry, a Docker engine, a Slurm cluster.

    ./tools/bazel run //tools/services -- start registry|docker|slurm|all [--state_dir=DIR]
    ./tools/bazel run //tools/services -- start slurm --nodes=2   # two nodes, one per core
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
  `--nodes=N` (N <= 8) runs N nodes devnode1..N instead, one slurmd each on this host (own
  loopback address 127.0.0.N as NodeAddr and host name, port, spool, pid and log file; the
  host's cores and memory split among them), so multi-node jobs (torchrun across nodes,
  c10d rendezvous) run for real on one machine.
  The shape persists in slurm.conf; a different --nodes rewrites it and restarts the
  daemons (refused while jobs are queued). One node stays the default: a node per core
  would leave no node with 2 CPUs, and the one-node two-process launches need one.
"""

from __future__ import annotations

import abc
import dataclasses
import os
import re
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


# Node states in which a dev node takes or runs jobs (sinfo's %T, flags `*~#` stripped).
_NODE_UP = ("idle", "mixed", "allocated", "completing")
# Each dev node is one more slurmd on this host; eight is past any test or demo here and
# stops a mistyped --nodes=100 from starting a hundred daemons.
MAX_DEV_NODES = 8


def slurm_node_names(count: int) -> list[str]:
    """Names of a `count`-node dev cluster: `localhost` alone, else devnode1..devnodeN.

    The one-node name stays `localhost` (the cluster's name before it grew nodes, so an
    existing state directory keeps its files). The devnodeN names resolve through no DNS on
    purpose: a job that dials a node by name instead of by Slurm's NodeAddr fails here as it
    would on a cluster whose node names are not host names.
    """
    if not 1 <= count <= MAX_DEV_NODES:
        raise ValueError(
            f"the dev Slurm cluster has 1 to {MAX_DEV_NODES} nodes (one slurmd each on this "
            f"host); got {count}: pass --nodes between 1 and {MAX_DEV_NODES}"
        )
    if count == 1:
        return ["localhost"]
    return [f"devnode{index}" for index in range(1, count + 1)]


def dev_node_address(index: int) -> str:
    """The loopback address of dev node `index` (0-based) of a multi-node cluster: 127.0.0.1,
    127.0.0.2, ...

    Linux routes all of 127/8 to `lo`, so each node gets an address of its own on this one
    host, as real nodes have. A job tells torchrun its node's address (the batch script's
    PET_LOCAL_ADDR, from NodeAddr), and torchrun's c10d rendezvous names a node by its
    address and its agent's pid: with one address for all, two nodes' containers (each its
    own pid namespace, the agent pid 2 in both) were one node to it, and the rendezvous
    waited for a second node that had already joined.
    """
    if not 0 <= index < MAX_DEV_NODES:
        raise ValueError(f"dev node index {index} is outside 0..{MAX_DEV_NODES - 1}")
    return f"127.0.0.{index + 1}"


@dataclasses.dataclass
class Slurm(_Service):
    """munged + slurmctld + one slurmd per node: a dev cluster named `terra-dev` on this host.

    Args:
        state_dir: all of the cluster's files.
        slurmctld_port: the controller's port on 127.0.0.1.
        slurmd_port: node 1's slurmd port; node i listens on slurmd_port + i - 1.
        num_nodes: nodes to run; None keeps the shape the state directory has (one node on
            a fresh one), so a launch that starts the cluster on demand never reshapes it.
            A number that differs from the running shape rewrites slurm.conf and restarts
            the daemons, refused while jobs are queued or running (they would be lost).
    """

    state_dir: Path
    slurmctld_port: int = DEFAULT_SLURMCTLD_PORT
    slurmd_port: int = DEFAULT_SLURMD_PORT
    num_nodes: int | None = None

    def __post_init__(self) -> None:
        if self.num_nodes is not None:
            slurm_node_names(self.num_nodes)  # validates the count

    @property
    def conf(self) -> Path:
        return self.state_dir / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.state_dir / "munge" / "socket" / "munge.socket"

    @property
    def nodes(self) -> list[str]:
        """The node names this service runs: `num_nodes` of them, else slurm.conf's."""
        if self.num_nodes is not None:
            return slurm_node_names(self.num_nodes)
        return self.configured_nodes() or slurm_node_names(1)

    def configured_nodes(self) -> list[str]:
        """The NodeName entries of the state directory's slurm.conf ([] before the first start)."""
        try:
            text = self.conf.read_text()
        except FileNotFoundError:
            return []
        return re.findall(r"^NodeName=(\S+)", text, re.MULTILINE)

    def _pid(self, daemon: str) -> Path:
        return self.state_dir / f"{daemon}.pid"

    def _slurmd_file(self, node: str, suffix: str) -> Path:
        """`slurmd.<suffix>` for the one-node cluster (its names before nodes were added),
        `slurmd-<node>.<suffix>` for each node of a larger one."""
        stem = "slurmd" if node == "localhost" else f"slurmd-{node}"
        return self.state_dir / f"{stem}.{suffix}"

    def running(self) -> bool:
        pid_files = [(self._pid("munged"), "munged"), (self._pid("slurmctld"), "slurmctld")]
        pid_files += [(self._slurmd_file(node, "pid"), "slurmd") for node in self.nodes]
        return all(process.running_pid(path, daemon) is not None for path, daemon in pid_files)

    def env(self) -> dict[str, str]:
        path = os.environ.get("PATH", "/usr/bin:/bin")
        return dict(os.environ, SLURM_CONF=str(self.conf), PATH=f"{path}:/usr/sbin:/sbin")

    def node_states(self) -> dict[str, str]:
        """{node: state} as the controller reports them ({} when it does not answer)."""
        result = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%N %T"], env=self.env(), capture_output=True, text=True
        )
        if result.returncode != 0:
            return {}
        pairs = (line.split() for line in result.stdout.splitlines())
        return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}

    def node_state(self) -> str:
        """The node states in one line, for messages (`devnode1=idle devnode2=down*`)."""
        return " ".join(f"{node}={state}" for node, state in self.node_states().items())

    def healthy(self) -> bool:
        """The controller knows exactly this service's nodes and every one takes jobs."""
        states = self.node_states()
        return sorted(states) == sorted(self.nodes) and all(
            state.rstrip("*~#") in _NODE_UP for state in states.values()
        )

    def _node_up(self, node: str) -> bool:
        return self.node_states().get(node, "").rstrip("*~#") in _NODE_UP

    def conf_text(self, cpus: int, memory_mb: int) -> str:
        """slurm.conf for `self.nodes` on a host with `cpus` cores and `memory_mb` to give."""
        s = self.state_dir
        nodes = self.nodes
        if len(nodes) == 1:
            spool, pid_file, log_file = s / "spool", s / "slurmd.internal.pid", s / "slurmd.log"
            node_lines = [
                f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} "
                "State=UNKNOWN"
            ]
            what = "a one-node dev cluster on loopback"
        else:
            # Several slurmd on one host: each needs its own port, spool, pid and log file
            # (%n is the name `slurmd -N` was given). The host's cores and memory are split
            # so the nodes together offer what the machine has: 2 cores make two one-CPU
            # nodes, and a two-node job gets one core per node, as it would on real nodes.
            spool, pid_file = s / "spool" / "%n", s / "slurmd-%n.internal.pid"
            log_file = s / "slurmd-%n.log"
            node_cpus = max(1, cpus // len(nodes))
            node_memory = max(256, memory_mb // len(nodes))
            # Each node has an address of its own (dev_node_address) and, as its slurmd runs
            # with that address as host name (_slurmd_argv), NodeHostname is the same.
            node_lines = [
                f"NodeName={node} NodeAddr={dev_node_address(index)} "
                f"NodeHostname={dev_node_address(index)} Port={self.slurmd_port + index} "
                f"CPUs={node_cpus} RealMemory={node_memory} State=UNKNOWN"
                for index, node in enumerate(nodes)
            ]
            what = f"a {len(nodes)}-node dev cluster on loopback, every slurmd on this host"
        node_list = ",".join(nodes)
        return f"""# Generated by launcher/services/services.py: {what}.
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
SlurmdSpoolDir={spool}
SlurmctldPidFile={s / "slurmctld.internal.pid"}
SlurmdPidFile={pid_file}
SlurmctldLogFile={s / "slurmctld.log"}
SlurmdLogFile={log_file}
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
{chr(10).join(node_lines)}
PartitionName=debug Nodes={node_list} Default=YES MaxTime=INFINITE State=UP
PartitionName=batch Nodes={node_list} Default=NO MaxTime=INFINITE State=UP
"""

    def _write_conf(self) -> None:
        cpus = os.cpu_count() or 1
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
        self.conf.write_text(self.conf_text(cpus, max(memory_mb - 512, 256)))
        (self.state_dir / "plugstack.conf").write_text("")

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

    def _slurmd_argv(self, node: str) -> list[str]:
        """The command of `node`'s slurmd: on a multi-node cluster, in a UTS namespace whose
        host name is the node's address.

        CommunicationParameters=NoInAddrAny (everything on loopback) makes slurmd listen on
        the address its host name resolves to, not on its NodeAddr: with this host's name,
        every node would listen on 127.0.0.1 and the controller and srun, which dial a node
        at its NodeAddr, would not reach devnode2 at 127.0.0.2. A numeric host name resolves
        to itself. Jobs inherit the namespace, so `hostname` on a node names that node.
        """
        slurmd = [process.program("slurmd"), "-D", "-f", str(self.conf), "-N", node]
        if node == "localhost":
            return slurmd
        address = dev_node_address(self.nodes.index(node))
        # `unshare` and then `sh` exec slurmd: the recorded pid ends up being slurmd's.
        set_name = 'hostname "$0" && exec "$@"'
        return [process.program("unshare"), "--uts", "--", "/bin/sh", "-c", set_name, address,
                *slurmd]  # fmt: skip

    def _queued_jobs(self) -> list[str]:
        """Ids of the jobs the controller holds (pending, running, completing); [] when no
        controller of ours runs or it does not answer."""
        if process.running_pid(self._pid("slurmctld"), "slurmctld") is None:
            return []
        result = subprocess.run(
            ["squeue", "-h", "-o", "%i"], env=self.env(), capture_output=True, text=True
        )
        return result.stdout.split() if result.returncode == 0 else []

    def _stop_for_reshape(self, configured: list[str]) -> None:
        """Stop the controller and the `configured` nodes' slurmd, so that the new slurm.conf
        is read by all; refused while the cluster holds jobs (a node they run on may go)."""
        if jobs := self._queued_jobs():
            raise RuntimeError(
                f"the dev Slurm cluster holds {len(jobs)} job(s) ({', '.join(jobs[:5])}); "
                f"reshaping it from {len(configured)} to {len(self.nodes)} node(s) restarts "
                "its daemons and would lose them: wait for them or scancel them, then start "
                "it again"
            )
        for node in configured:
            process.stop_daemon(self._slurmd_file(node, "pid"), "slurmd")
        process.stop_daemon(self._pid("slurmctld"), "slurmctld")

    def _start(self) -> str:
        nodes = self.nodes
        configured = self.configured_nodes()
        if configured == nodes and self.running() and self.healthy():
            return str(self.conf)
        # The node is this machine and runs each job's image through run_image.py; without a
        # Docker engine that is bubblewrap, so the node gets it with the daemons.
        packages.ensure_installed(
            {"slurmctld": "slurm-wlm", "munged": "munge", "jobs' sandbox": "bubblewrap"}
        )
        if os.geteuid() != 0:
            raise RuntimeError("the dev Slurm cluster runs its daemons as root; start it as root")
        if configured and configured != nodes:
            self._stop_for_reshape(configured)
        slurmd_pids = {node: self._slurmd_file(node, "pid") for node in nodes}
        ours_running = process.running_pid(self._pid("slurmctld"), "slurmctld") or any(
            process.running_pid(path, "slurmd") for path in slurmd_pids.values()
        )
        for port in (self.slurmctld_port, *(self.slurmd_port + i for i in range(len(nodes)))):
            if _port_open("127.0.0.1", port) and not ours_running:
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
        for node, pid_file in slurmd_pids.items():
            if process.running_pid(pid_file, "slurmd") is None:
                process.start_daemon(
                    self._slurmd_argv(node),
                    pid_file,
                    self._slurmd_file(node, "out"),
                    ready=lambda node=node: self._node_up(node),
                    timeout_s=30,
                    env=env,
                    program="slurmd",
                )
        deadline = time.monotonic() + 30
        while not self.healthy():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Slurm nodes did not all become idle: {self.node_state()!r}"
                )
            time.sleep(0.3)
        return str(self.conf)

    def _stop(self) -> bool:
        stopped = False
        for node in dict.fromkeys([*self.configured_nodes(), *self.nodes]):
            stopped |= process.stop_daemon(self._slurmd_file(node, "pid"), "slurmd")
        for daemon in ("slurmctld", "munged"):
            stopped |= process.stop_daemon(self._pid(daemon), daemon)
        return stopped


def registry(state_root: Path | None = None, address: str = DEFAULT_REGISTRY_ADDRESS) -> Registry:
    return Registry((state_root or default_state_root()) / "registry", address)


def docker(state_root: Path | None = None) -> Docker:
    return Docker((state_root or default_state_root()) / "docker")


def slurm(state_root: Path | None = None, num_nodes: int | None = None) -> Slurm:
    return Slurm((state_root or default_state_root()) / "slurm", num_nodes=num_nodes)
