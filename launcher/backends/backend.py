"""The backend interface: every cluster kind submits the same job description.

A backend gets a `JobSpec` (an image by digest, the entrypoint's arguments, the resources)
and answers four calls: `submit(job) -> id`, `status(id)`, `logs(id)`, `cancel(id)`.
Kubernetes or Beaker would plug in here with the same four calls. A group of jobs (a study's
runs) goes through `submit_array(jobs, name) -> ids`: one by one unless the scheduler has a
native group (Slurm's job arrays); a submission that stops part-way raises
`SubmissionIncomplete` naming the jobs already submitted.

Inside the image the entrypoint runs `experiments/<experiment>.py train <run> <cluster> ...`
(launcher/image/entrypoint.sh); backends only say how many nodes and processes, where the
run root and data are mounted, and which secrets to pass from the submitter's environment.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
import enum
import json
import re
from collections.abc import Sequence
from pathlib import Path
from secrets import token_hex

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
    # Stopped by the scheduler for other work and put back in the queue (Slurm's PREEMPTED,
    # REQUEUED): not finished, it runs again and resumes from its newest checkpoint.
    PREEMPTED = "PREEMPTED"
    UNKNOWN = "UNKNOWN"

    @property
    def finished(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


# A job id as the `jobs` tool and job_states accept it: ASCII letters, digits, '.', '_', '-',
# not starting with '-' (it would read as an option of scancel or scontrol), no '/' (the
# local backend's ids name index files). 200 characters: a local id is a run name (at most
# 128) plus its 23-character job folder name.
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}", re.ASCII)


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

    def write_runner(self, folder: Path | None = None) -> Path:
        """A copy of run_image.py in `folder` (default: the job folder): nodes need no
        checkout, only python3."""
        folder = Path(folder or self.job_dir)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "run_image.py"
        target.write_bytes(Path(run_image.__file__).read_bytes())
        return target

    def record(self, job_id: str, extra: dict[str, object]) -> None:
        self.job_dir.mkdir(parents=True, exist_ok=True)
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


def unique_folder(parent: Path) -> Path:
    """A new folder `parent/<UTC YYYYmmddTHHMMSS>-<6 hex>`, made here; never one that exists.

    The time sorts the folders of one parent by submission; the random part makes two
    submissions in the same second (or from two machines) distinct.
    """
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        folder = parent / f"{stamp}-{token_hex(3)}"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder


class SubmissionIncomplete(RuntimeError):
    """A group submission stopped part-way; `submitted` holds the ids of the jobs already
    queued (in the order of the jobs given), so none is lost: they run, and a caller can
    report or cancel them.

    Attributes:
        submitted: job ids of `jobs[:len(submitted)]`.
        cause: the error that stopped the submission.
    """

    def __init__(self, submitted: list[str], cause: BaseException) -> None:
        self.submitted = list(submitted)
        self.cause = cause
        done = ", ".join(self.submitted) if self.submitted else "none"
        super().__init__(f"{cause} (jobs already submitted: {done})")


class Backend(abc.ABC):
    """Submit, watch and stop jobs on one cluster."""

    @abc.abstractmethod
    def submit(self, job: JobSpec) -> str:
        """Start or queue `job`; returns the backend's job id."""

    def submit_each(self, jobs: Sequence[JobSpec]) -> list[str]:
        """`submit` every job in order; their ids, in the same order.

        Raises:
            SubmissionIncomplete: a submission failed; it names the ids already submitted.
        """
        submitted: list[str] = []
        for job in jobs:
            try:
                submitted.append(self.submit(job))
            except (RuntimeError, OSError, ValueError) as error:
                raise SubmissionIncomplete(submitted, error) from error
        return submitted

    def submit_array(self, jobs: Sequence[JobSpec], name: str) -> list[str]:
        """Submit `jobs` as one group called `name`; their ids, in the order of `jobs`.

        This default has no group: it submits the jobs one by one (`name` is for schedulers
        that show a group, such as Slurm's job arrays).

        Raises:
            SubmissionIncomplete: the submission stopped part-way (see its `submitted`).
        """
        return self.submit_each(jobs)

    def job_id_problem(self, job_id: str) -> str | None:
        """Why `job_id` cannot be one of this backend's ids (None: it can), checked before
        the id reaches a command line or a file name."""
        if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
            return f"{job_id!r} is not a job id (launch prints it)"
        return None

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
