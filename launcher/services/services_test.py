"""Dev services for real: registry, Slurm, Docker start once, listen on loopback, stop by pid.

Each test uses its own state directory and ports, so the developer's running services (in
the default state directory) are neither reused nor disturbed.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from launcher.services import packages, process, services


@pytest.fixture
def state_root():
    # Short path under /tmp: Docker's Unix sockets allow 108 bytes (Bazel's TEST_TMPDIR is long).
    root = Path(tempfile.mkdtemp(prefix="svc-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _listening_addresses(pid: int) -> list[str]:
    """Local addresses of the TCP sockets `pid` (or its threads) listens on."""
    output = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    return [line.split()[3] for line in output.splitlines() if f"pid={pid}," in line]


def _pid(pid_file: Path) -> int:
    return int(pid_file.read_text())


def test_registry_starts_once_listens_on_loopback_and_stops_by_pid(state_root):
    registry = services.registry(state_root, "127.0.0.1:5055")
    try:
        assert registry.start() == "http://127.0.0.1:5055"
        pid = _pid(registry.pid_file)
        assert registry.start() == "http://127.0.0.1:5055"  # idempotent: the same daemon
        assert _pid(registry.pid_file) == pid
        assert _listening_addresses(pid) == ["127.0.0.1:5055"]
        with urllib.request.urlopen("http://127.0.0.1:5055/v2/_catalog") as response:
            assert b"repositories" in response.read()
        assert (state_root / "registry" / "config.yml").exists()
    finally:
        assert registry.stop() is True
    assert not registry.running() and not registry.healthy()
    assert registry.stop() is False


def _registry_processes(config: Path) -> list[int]:
    """Pids of the docker-registry processes serving `config` (found through /proc)."""
    pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    return [
        pid
        for pid in pids
        if (argv := process.cmdline(pid))
        and os.path.basename(argv[0]) == "docker-registry"
        and str(config) in argv
    ]


_START_AT_ONCE = """
import sys, time
from pathlib import Path
from launcher.services import packages, process, services
start_at = float(sys.argv[3])
registry = services.Registry(Path(sys.argv[1]), sys.argv[2])
time.sleep(max(0.0, start_at - time.time()))
where, started = registry.start_reporting()
print(where, started)
"""


def test_concurrent_registry_starts_leave_one_daemon_named_by_the_pid_file(state_root):
    # Without the service lock, every starter found no daemon and started one: the losers
    # could not bind the port, and the pid file named one of them while the winner ran on.
    registry = services.Registry(state_root / "registry", "127.0.0.1:5057")
    packages.ensure_installed({"registry": "docker-registry"})  # before the race, not in it
    start_at = time.time() + 1.5  # the interpreters are up by then, so the starts coincide
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", _START_AT_ONCE, str(registry.state_dir), registry.address,
             str(start_at)],
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]  # fmt: skip
    try:
        reports = []
        for starter in starters:
            out, err = starter.communicate(timeout=120)
            assert starter.returncode == 0, err
            reports.append(out.split())
        assert sorted(reports) == [["http://127.0.0.1:5057", "False"]] * 3 + [
            ["http://127.0.0.1:5057", "True"]
        ]  # exactly one starter says it started the daemon
        config = registry.state_dir / "config.yml"
        (pid,) = _registry_processes(config)
        assert _pid(registry.pid_file) == pid
        assert registry.running() and registry.healthy()
        assert registry.start() == "http://127.0.0.1:5057"  # a later start does nothing
        assert _registry_processes(config) == [pid] and _pid(registry.pid_file) == pid
    finally:
        assert registry.stop() is True
    assert _registry_processes(registry.state_dir / "config.yml") == []
    assert not registry.pid_file.exists()


def test_registry_refuses_a_non_loopback_address(state_root):
    with pytest.raises(ValueError, match="loopback only"):
        services.registry(state_root, "0.0.0.0:5056").start()


def test_slurm_cluster_runs_a_batch_job_and_listens_on_loopback(state_root):
    slurm = services.Slurm(state_root / "slurm", slurmctld_port=6917, slurmd_port=6918)
    try:
        conf = slurm.start()
        assert slurm.running() and slurm.healthy()
        for daemon in ("slurmctld", "slurmd"):
            addresses = _listening_addresses(_pid(slurm.state_dir / f"{daemon}.pid"))
            assert addresses and all(a.startswith("127.0.0.1:") for a in addresses), addresses
        script = state_root / "job.sh"
        script.write_text("#!/bin/sh\necho hello from $SLURM_JOB_ID\n")
        env = dict(os.environ, SLURM_CONF=conf)
        job_id = subprocess.run(
            ["sbatch", "--parsable", f"--output={state_root}/out-%j.txt", str(script)],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline:
            shown = subprocess.run(
                ["scontrol", "show", "job", "-o", job_id], env=env, capture_output=True, text=True
            ).stdout
            state = re.search(r"JobState=(\w+)", shown).group(1)
            if state in ("COMPLETED", "FAILED", "CANCELLED"):
                break
            time.sleep(0.5)
        assert state == "COMPLETED"
        assert (state_root / f"out-{job_id}.txt").read_text() == f"hello from {job_id}\n"
        assert slurm.start() == conf  # idempotent
        # The node can run a job's image without Docker: bubblewrap came with the cluster.
        assert packages.missing(["bubblewrap"]) == []
    finally:
        assert slurm.stop() is True
    assert not slurm.running()


def _wait_for_job(job_id: str, env: dict[str, str], timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        shown = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id], env=env, capture_output=True, text=True
        ).stdout
        state = re.search(r"JobState=(\w+)", shown).group(1)
        if state in ("COMPLETED", "FAILED", "CANCELLED"):
            break
        time.sleep(0.5)
    return state


def test_a_one_node_slurm_state_restarted_as_two_nodes_runs_a_job_on_both(state_root):
    """An existing one-node state directory started with two nodes: conf rewritten, daemons
    restarted, two slurmd on their own ports, and one job's tasks land one on each node."""
    one = services.Slurm(state_root / "slurm", slurmctld_port=6927, slurmd_port=6928)
    two = services.Slurm(state_root / "slurm", slurmctld_port=6927, slurmd_port=6928, num_nodes=2)
    try:
        conf = one.start()
        controller = _pid(one.state_dir / "slurmctld.pid")
        assert two.start_reporting() == (conf, True)
        assert two.running() and two.healthy()
        assert _pid(two.state_dir / "slurmctld.pid") != controller  # restarted on the new conf
        # The one-node slurmd is gone, not left beside the two new ones.
        assert process.running_pid(one.state_dir / "slurmd.pid", "slurmd") is None
        ports = {
            node: _listening_addresses(_pid(two.state_dir / f"slurmd-{node}.pid"))
            for node in ("devnode1", "devnode2")
        }
        # Each node at its own address (NodeAddr), as its slurmd's host name is that address.
        assert ports == {"devnode1": ["127.0.0.1:6928"], "devnode2": ["127.0.0.2:6929"]}
        # A start without a node count (what a launch does) keeps both nodes and daemons.
        kept = services.Slurm(state_root / "slurm", slurmctld_port=6927, slurmd_port=6928)
        assert kept.start_reporting() == (conf, False)

        script = state_root / "job.sh"
        script.write_text(
            "#!/bin/sh\nsrun --label sh -c 'echo on $SLURMD_NODENAME $(hostname)' | sort\n"
        )
        env = dict(os.environ, SLURM_CONF=conf)
        job_id = subprocess.run(
            ["sbatch", "--parsable", "--nodes=2", "--ntasks-per-node=1",
             f"--output={state_root}/out-%j.txt", str(script)],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        assert _wait_for_job(job_id, env) == "COMPLETED"
        output = (state_root / f"out-{job_id}.txt").read_text()
        # Jobs run in their node's namespace: `hostname` names the node by its address.
        assert output == "0: on devnode1 127.0.0.1\n1: on devnode2 127.0.0.2\n"

        # Reshaping while the cluster holds a job would lose it: refused, daemons untouched.
        waiting = subprocess.run(
            ["sbatch", "--parsable", "--nodes=2", "--begin=now+1hour", "--wrap=true"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        back_to_one = services.Slurm(
            state_root / "slurm", slurmctld_port=6927, slurmd_port=6928, num_nodes=1
        )
        with pytest.raises(RuntimeError, match=rf"holds 1 job\(s\) \({waiting}\).*scancel"):
            back_to_one.start()
        assert two.running() and two.healthy()
        subprocess.run(["scancel", waiting], env=env, check=True)
        deadline = time.monotonic() + 30
        while back_to_one._queued_jobs() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert back_to_one.start() == conf  # and back: one node named localhost again
        assert back_to_one.healthy() and back_to_one.nodes == ["localhost"]
    finally:
        assert two.stop() is True
    assert not two.running() and not one.running()
    leftover = [
        path.name
        for path in (state_root / "slurm").glob("*.pid")
        if process.running_pid(path, path.stem.partition("-")[0]) is not None
    ]
    assert leftover == []


def test_docker_engine_answers_on_its_socket_and_opens_no_tcp_port(state_root):
    docker = services.docker(state_root)
    try:
        host = docker.start()
        assert host == f"unix://{state_root}/docker/docker.sock"
        assert docker.healthy()
        version = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Os}}"],
            env=dict(os.environ, DOCKER_HOST=host),
            capture_output=True,
            text=True,
        )
        assert version.stdout.strip() == "linux", version.stderr
        assert _listening_addresses(_pid(docker.pid_file)) == []
    finally:
        assert docker.stop() is True
    assert not docker.healthy()
