"""The `local` backend: run the pushed image on this machine, detached from the launcher.

A job is a background process (its own session) running launcher/runtime/run_image.py,
which pulls the image by digest and runs it through the Docker engine when one answers
(DOCKER_HOST, the launcher/services engine, /var/run/docker.sock), else through bubblewrap on
the unpacked image. Its files live in the job folder: `run_image.py` (a copy), `job.json`,
`output.log`, `pid` and, once it ends, `exit_code`. The job id is
`<run name>-<job folder name>` (`<YYYYmmddTHHMMSS>-<hex>`, launch.new_job_dir); the index in
`<cache>/jobs/<cluster>/<id>` points at the folder.

`preflight` (launch calls it after the static checks, before the tests) makes sure the
machine can run the image at all: it starts the dev Docker engine when the cluster lists
that service, and otherwise installs bubblewrap on demand (`ensure_container_runtime`, also
for the dev Slurm node).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from launcher.backends.backend import Backend, JobSpec, JobState, JobStatus
from launcher.services import packages, process, services

_START_DOCKER = "./tools/bazel run //tools/services -- start docker"
# What run_image.py's bwrap_command unshares for an image with a non-root user (ours).
_BWRAP_PROBE = [
    "bwrap", "--unshare-user", "--unshare-pid", "--unshare-ipc",
    "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true",
]  # fmt: skip


def find_docker_host() -> str | None:
    """The first Docker engine that answers: $DOCKER_HOST, launcher/services', the system's.

    The engine is asked through the docker SDK; the job itself runs the image with the docker
    CLI (launcher/runtime/run_image.py is one standard-library file that Slurm nodes run
    too), so an engine without the CLI on this machine does not count.
    """
    if shutil.which("docker") is None:
        return None
    candidates = []
    if os.environ.get("DOCKER_HOST"):
        candidates.append(os.environ["DOCKER_HOST"])
    candidates.append(services.docker().docker_host)
    candidates.append("unix:///var/run/docker.sock")
    for candidate in candidates:
        if candidate.startswith("unix://") and not Path(candidate[len("unix://") :]).exists():
            continue
        if services.docker_engine_answers(candidate):
            return candidate
    return None


def ensure_container_runtime(runtime: str = "auto", start_docker: bool = False) -> list[str]:
    """Make this machine able to run a job's image with `runtime`; the problems left, if any.

    Jobs of the `local` cluster, and of a Slurm cluster whose node is this machine (the dev
    one), run the image through run_image.py: a Docker engine when one answers, else
    bubblewrap. A fresh machine has neither, and such a job used to fail right after its id
    was printed. So, before anything is pushed:

    - with `start_docker` (clusters.yaml lists the `docker` service) the dev engine starts;
    - "auto" takes an engine that answers, else bubblewrap; "docker" needs an engine;
    - bubblewrap is installed on demand as root (Debian's `bubblewrap`, like the dev
      services' packages), and tried once, since a kernel may forbid its user namespaces.

    Each problem is one line with the fix; [] means a job can start.
    """
    if start_docker and runtime in ("auto", "docker"):
        engine = services.docker()
        try:
            engine.start()
        except (RuntimeError, OSError, ValueError) as error:
            return [
                f"the dev Docker engine did not start ({_first_line(error)}); see "
                f"{engine.state_dir / 'dockerd.log'}, or drop `docker` from the cluster's "
                "services in launcher/clusters.yaml to run jobs under bubblewrap"
            ]
    if runtime in ("auto", "docker") and find_docker_host() is not None:
        return []
    if runtime == "docker":
        return [
            "launcher/clusters.yaml asks for runtime docker, but no Docker engine answers "
            "($DOCKER_HOST, launcher/services' engine, /var/run/docker.sock); start one: "
            + _START_DOCKER
        ]
    return _ensure_bubblewrap()


def _ensure_bubblewrap() -> list[str]:
    if shutil.which("bwrap") is None:
        try:
            packages.ensure_installed({"bwrap": "bubblewrap"})
        except packages.MissingPackages as error:
            return [
                "no Docker engine answers and bubblewrap is not installed; install it as root: "
                f"{error.command} (or start Docker: {_START_DOCKER})"
            ]
        except RuntimeError as error:
            return [f"could not install bubblewrap ({_first_line(error)}); or: {_START_DOCKER}"]
    try:
        probe = subprocess.run(_BWRAP_PROBE, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return [f"bwrap does not run ({_first_line(error)}); reinstall bubblewrap"]
    if probe.returncode != 0:
        return [
            f"bwrap cannot make a sandbox on this machine ({_first_line(probe.stderr)}); allow "
            "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1) or use "
            f"Docker: {_START_DOCKER}"
        ]
    return []


def _first_line(error: object) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


class LocalBackend(Backend):
    """Jobs as detached runner processes on this machine.

    Args:
        index_dir: folder of job-id -> job-folder links.
        runtime: "auto", "docker" or "bwrap" (clusters.yaml `runtime`).
        services: the cluster's dev services (clusters.yaml `services`); with "docker",
            preflight starts the dev Docker engine.
    """

    def __init__(
        self, index_dir: Path, runtime: str = "auto", services: tuple[str, ...] = ()
    ) -> None:
        self.index_dir = Path(index_dir)
        self.runtime = runtime
        self.services = tuple(services)

    def preflight(self, job_partitions: tuple[str, ...]) -> list[str]:
        """A container runtime this machine can run the image with (see
        `ensure_container_runtime`); the local cluster has no partitions to check."""
        return ensure_container_runtime(self.runtime, start_docker="docker" in self.services)

    def _job_dir(self, job_id: str) -> Path:
        link = self.index_dir / job_id
        if not link.exists():
            raise KeyError(f"no local job {job_id!r} (looked in {self.index_dir})")
        return link.resolve()

    def submit(self, job: JobSpec) -> str:
        # The job folder's name is unique per submission (launch.new_job_dir), so two
        # submissions of one run name in the same second still get two ids.
        job_id = f"{job.name}-{job.job_dir.name}"
        runner = job.write_runner()
        runtime = self.runtime if job.runtime == "auto" else job.runtime
        docker_host = None
        if runtime in ("auto", "docker"):
            docker_host = find_docker_host()
            if docker_host is None and runtime == "docker":
                raise RuntimeError("clusters.yaml asks for Docker, but no Docker engine answers")
            runtime = "docker" if docker_host else "bwrap"
        args = job.runner_args(docker_host)
        args[args.index("--runtime") + 1] = runtime
        env = dict(job.env, TERRA_LAB_JOB_ID=job_id)
        command = [
            sys.executable,
            str(runner),
            *args,
            "--env",
            f"TERRA_LAB_JOB_ID={env['TERRA_LAB_JOB_ID']}",
            "--name",
            f"terra-{job_id}",
            "--exit-code-file",
            str(job.job_dir / "exit_code"),
            "--",
            *job.args,
        ]
        for stale in ("exit_code", "cancelled"):
            (job.job_dir / stale).unlink(missing_ok=True)
        with open(job.job_dir / "output.log", "ab") as log:
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=_runner_environment(job),
            )
        # The pid and its start time: a recycled pid never passes for the runner.
        (job.job_dir / "pid").write_text(f"{child.pid} {_start_time(child.pid)}\n")
        self.index_dir.mkdir(parents=True, exist_ok=True)
        link = self.index_dir / job_id
        link.unlink(missing_ok=True)
        link.symlink_to(job.job_dir)
        job.record(job_id, {"backend": "local", "runtime": runtime, "pid": child.pid})
        return job_id

    def status(self, job_id: str) -> JobStatus:
        job_dir = self._job_dir(job_id)
        cancelled = (job_dir / "cancelled").exists()
        exit_file = job_dir / "exit_code"
        if exit_file.exists():
            code = int(exit_file.read_text().strip() or "1")
            if code == 0:
                return JobStatus(JobState.COMPLETED)
            if cancelled:
                return JobStatus(JobState.CANCELLED, f"exit code {code}")
            return JobStatus(JobState.FAILED, f"exit code {code}")
        if self._alive(job_dir):
            return JobStatus(JobState.RUNNING)
        if cancelled:
            return JobStatus(JobState.CANCELLED)
        return JobStatus(JobState.FAILED, "the runner ended without an exit code (see the log)")

    @staticmethod
    def _alive(job_dir: Path) -> bool:
        """The runner still runs: its pid exists, is not a zombie, and started when recorded."""
        try:
            pid_text, started = (job_dir / "pid").read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return False
        return not process.is_zombie(pid) and _start_time(pid) == started

    def logs(self, job_id: str) -> str:
        return (self._job_dir(job_id) / "output.log").read_text(errors="replace")

    def cancel(self, job_id: str) -> None:
        job_dir = self._job_dir(job_id)
        (job_dir / "cancelled").write_text("")
        if self._alive(job_dir):
            pid = int((job_dir / "pid").read_text().split()[0])
            os.killpg(pid, signal.SIGTERM)  # the runner stops its container or sandbox

    def follow_hint(self, job_id: str) -> str:
        return f"tail -f {self._job_dir(job_id) / 'output.log'}"


def _start_time(pid: int) -> str:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot), "" when the pid is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _runner_environment(job: JobSpec) -> dict[str, str]:
    """The runner's environment: enough to find tools, plus the secrets it passes on."""
    keep = ("PATH", "HOME", "USER", "LANG", "DOCKER_CONFIG", *job.secrets)
    return {key: os.environ[key] for key in keep if key in os.environ}
