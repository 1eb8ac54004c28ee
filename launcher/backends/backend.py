"""The backend interface: every cluster kind submits the same job description.

A backend gets a `JobSpec` (an image by digest, the entrypoint's arguments, the resources)
and answers four calls: `submit(job) -> id`, `status(id)`, `logs(id)`, `cancel(id)`.
Kubernetes or Beaker would plug in here with the same four calls.

Inside the image the entrypoint runs `experiments/<experiment>.py train <run> <cluster> ...`
(launcher/image/entrypoint.sh); backends only say how many nodes and processes, where the
run root and data are mounted, and which secrets to pass from the submitter's environment.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import json
from pathlib import Path

from launcher.registry.client import ImageReference
from launcher.runtime import run_image

# Where the image sees the cluster's roots (the base layer creates both mount points).
RUNS_MOUNT = "/app/runs"
DATA_MOUNT = "/data"
# The image user's cache ($XDG_CACHE_HOME default): a persistent per-cluster folder, so
# generated datasets and downloads survive the job and are shared by its ranks.
CACHE_MOUNT = "/home/terra/.cache"


class JobState(enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"

    @property
    def finished(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


@dataclasses.dataclass(frozen=True)
class JobStatus:
    state: JobState
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """One job: an image by digest and what to run in it.

    Attributes:
        name: job name shown by the scheduler (the run name).
        image: the image, by digest.
        registry_url: where the nodes pull it from.
        args: arguments of the image's entrypoint (experiment, run, cluster, overrides).
        env: non-secret variables for the job (TERRA_LAB_*).
        secrets: names of variables copied from the submitter's environment at run time.
        run_root: host folder mounted read-write at /app/runs.
        run_dir: the run's own folder under run_root (made writable for the job).
        data_root: host folder mounted read-only at /data, when it exists.
        job_dir: host folder for the job's own files (script, log, runner copy).
        num_nodes: machines.
        procs_per_node: training processes per machine (torchrun --nproc_per_node).
        gpus_per_node: GPUs to request per machine (0 on CPU clusters).
        partitions: scheduler partitions in order of preference.
        priority_args: scheduler arguments for the requested priority.
        requeue: requeue on preemption or node failure (the run resumes from a checkpoint).
        runtime: "auto", "docker" or "bwrap" on the node.
        image_cache: node folder for unpacked images (daemonless runtime).
        job_cache: host folder mounted read-write as the image user's ~/.cache (None: none).
    """

    name: str
    image: ImageReference
    registry_url: str
    args: tuple[str, ...]
    env: dict[str, str]
    secrets: tuple[str, ...]
    run_root: Path
    run_dir: Path
    data_root: Path
    job_dir: Path
    num_nodes: int = 1
    procs_per_node: int = 1
    gpus_per_node: int = 0
    partitions: tuple[str, ...] = ()
    priority_args: tuple[str, ...] = ()
    requeue: bool = True
    runtime: str = "auto"
    image_cache: Path = Path("/tmp/terra-lab-image-runtime")
    job_cache: Path | None = None

    def __post_init__(self) -> None:
        if self.num_nodes < 1:
            raise ValueError(f"JobSpec.num_nodes must be >= 1, got {self.num_nodes}")
        if self.procs_per_node < 1:
            raise ValueError(f"JobSpec.procs_per_node must be >= 1, got {self.procs_per_node}")
        if self.runtime not in ("auto", "docker", "bwrap"):
            raise ValueError(f"JobSpec.runtime must be auto, docker or bwrap, got {self.runtime!r}")

    def mounts(self) -> list[str]:
        mounts = [f"{self.run_root}:{RUNS_MOUNT}"]
        if self.data_root.is_dir():
            mounts.append(f"{self.data_root}:{DATA_MOUNT}:ro")
        if self.job_cache is not None:
            mounts.append(f"{self.job_cache}:{CACHE_MOUNT}")
        return mounts

    def job_env(self) -> dict[str, str]:
        """`env` plus where the framework finds runs and data inside the image."""
        env = dict(self.env)
        env["TERRA_RUN_ROOT"] = RUNS_MOUNT
        if self.data_root.is_dir():
            env["TERRA_DATA_DIR"] = DATA_MOUNT
        env.setdefault("TERRA_LAB_NNODES", str(self.num_nodes))
        env.setdefault("TERRA_LAB_NPROC_PER_NODE", str(self.procs_per_node))
        return env

    def runner_args(self, docker_host: str | None = None) -> list[str]:
        """Arguments of launcher/runtime/run_image.py for this job (before `--` and args)."""
        repository_at_digest = f"{self.image.repository}@{self.image.digest}"
        args = [
            "--registry",
            self.registry_url,
            "--image",
            repository_at_digest,
            "--cache",
            str(self.image_cache),
            "--runtime",
            self.runtime,
            "--gpus",
            str(self.gpus_per_node),
        ]
        if docker_host:
            args += ["--docker-host", docker_host]
        for mount in self.mounts():
            args += ["--mount", mount]
        for key, value in sorted(self.job_env().items()):
            args += ["--env", f"{key}={value}"]
        for secret in self.secrets:
            args += ["--pass-env", secret]
        for writable in (self.run_dir, self.job_cache):
            if writable is not None:
                args += ["--writable", str(writable)]
        return args

    def write_runner(self) -> Path:
        """A copy of run_image.py in the job folder: nodes need no checkout, only python3."""
        self.job_dir.mkdir(parents=True, exist_ok=True)
        target = self.job_dir / "run_image.py"
        target.write_bytes(Path(run_image.__file__).read_bytes())
        return target

    def record(self, job_id: str, extra: dict[str, object]) -> None:
        document = {
            "job_id": job_id,
            "name": self.name,
            "image": str(self.image),
            "args": list(self.args),
            "env": self.env,
            "secrets": list(self.secrets),
            **extra,
        }
        (self.job_dir / "job.json").write_text(json.dumps(document, indent=2))


class Backend(abc.ABC):
    """Submit, watch and stop jobs on one cluster."""

    @abc.abstractmethod
    def submit(self, job: JobSpec) -> str:
        """Start or queue `job`; returns the backend's job id."""

    @abc.abstractmethod
    def status(self, job_id: str) -> JobStatus: ...

    @abc.abstractmethod
    def logs(self, job_id: str) -> str:
        """Everything the job printed so far."""

    @abc.abstractmethod
    def cancel(self, job_id: str) -> None: ...

    @abc.abstractmethod
    def follow_hint(self, job_id: str) -> str:
        """A shell command that follows the job's log."""

    def preflight(self, job_partitions: tuple[str, ...]) -> list[str]:
        """Problems that would make a submission fail, found before anything is pushed."""
        return []
