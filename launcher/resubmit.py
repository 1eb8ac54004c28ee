"""resubmit_image: run an already-pushed image again, as a new run, on its cluster.

`launch` gates, builds and pushes the image of a commit, then submits it by digest. A
reproduction (experiments/framework/reproduce.py) wants the same job again from a run's
records alone: the image was gated when it was first launched, so nothing is tested, built
or pushed here. What is checked is what can have changed since:
  - the names (run, experiment, cluster, W&B project) still follow models/names;
  - the cluster still exists in launcher/clusters.yaml and the launch settings fit it;
  - the cluster's registry still holds the manifest of that exact digest (registries can be
    garbage-collected; the job would fail on its node minutes later instead).
Then the job is submitted as `launch` submits it (same arguments, environment and mounts)
and, when asked, followed until it ends, with a line per state change and per new last
line of the job's output (its progress line).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from launcher import clusters
from launcher.backends.backend import Backend, JobState
from launcher.cli import command
from launcher.launch import (
    LaunchFailed,
    RunRequest,
    ensure_services,
    job_spec,
    make_backend,
)
from launcher.registry import client as registry_client
from launcher.settings import LaunchSettings
from launcher.workspace import workspace_root
from models.names import names

__all__ = ["ResubmitResult", "resubmit_image"]

# A finished job's state is asked every 10 s: a CPU reproduction takes minutes, a GPU one
# hours, and each local status call reads files and a /proc entry (milliseconds).
POLL_SECONDS = 10.0
# The registry probe gives up after about 1.5 s (3 tries): a registry that is down is
# reported at once instead of after the push client's default five retries.
_PROBE_RETRY = registry_client.RetryPolicy(attempts=3, initial_backoff_s=0.5)


@dataclasses.dataclass(frozen=True)
class ResubmitResult:
    """What a resubmission did.

    Attributes:
        job_id: the backend's id.
        image: the image reference the job runs (`host/repository@sha256:...`).
        run_dir: the new run's folder on the cluster's run root (as this machine sees it).
        state: the job's last known state: its final one when waited for, else as submitted.
        detail: the backend's words about that state (an exit code, a reason).
    """

    job_id: str
    image: str
    run_dir: Path
    state: JobState
    detail: str = ""


def _name_problems(experiment: str, run_name: str, cluster: str, project: str) -> list[str]:
    found = [
        names.experiment_problem(experiment),
        names.run_name_problem(run_name),
        names.cluster_problem(cluster),
        names.project_problem(project),
    ]
    return [problem for problem in found if problem]


def _check_image_in_registry(reference: registry_client.ImageReference, url: str) -> None:
    client = registry_client.RegistryClient(
        url, reference.repository, retry=_PROBE_RETRY, log=lambda _: None
    )
    try:
        client.get_manifest(reference.digest)
    except registry_client.RegistryError as error:
        raise LaunchFailed(
            f"the registry {url} no longer serves {reference.repository}@{reference.digest} "
            f"({command.one_line(error)[:200]}); push that commit's image again "
            "(./tools/bazel run //launcher:push_image -- --revision <commit>) or reproduce "
            "from the commit instead of the image"
        ) from error


def resubmit_image(
    experiment: str,
    run_name: str,
    cluster: str,
    overrides: Sequence[str],
    image: str,
    commit: str,
    wandb_project: str,
    launch: LaunchSettings | None = None,
    wait: bool = False,
    workspace: Path | None = None,
    poll_seconds: float = POLL_SECONDS,
    report: Callable[[str], None] | None = None,
) -> ResubmitResult:
    """Submit `(experiment, run_name, cluster, *overrides)` with the pushed `image` (module doc).

    Args:
        image: `host/repository@sha256:...`, as a run's provenance records it.
        commit: the commit the image was built from (the job's TERRA_LAB_COMMIT, which its
            provenance and identity record).
        wandb_project: the run folder's parent on the cluster's run root.
        launch: the run's `launch` section (nodes, GPUs, partitions); None: the defaults.
        wait: follow the job until it ends (a line per state change through `report`).
        report: where progress lines go; default: stderr.

    Raises:
        ValueError: a name or the image reference is malformed, the cluster is unknown or
            the launch settings do not fit it (one line each; exit status 2).
        LaunchFailed: the registry lacks the image, a service or the scheduler failed.
    """
    say = report or (lambda line: print(line, file=sys.stderr, flush=True))
    problems = _name_problems(experiment, run_name, cluster, wandb_project)
    if problems:
        raise ValueError("; ".join(problems))
    try:
        reference = registry_client.ImageReference.parse(image)
    except ValueError as error:
        raise ValueError(f"{error}; a run's provenance.json records it as starts[].image") from None
    workspace = Path(workspace or workspace_root())
    try:
        settings = clusters.load(workspace)
        cluster_config = settings.cluster(cluster)
        resources = (launch or LaunchSettings()).build(cluster_config)
    except OSError as error:
        raise ValueError(
            f"cannot read the cluster list ({error.strerror}: {error.filename}); run from a "
            "terra-lab checkout, which has launcher/clusters.yaml"
        ) from error
    try:
        ensure_services(cluster_config)
    except (RuntimeError, OSError, ValueError) as error:
        raise LaunchFailed(
            f"a service {cluster} needs did not start: {command.one_line(error)[:300]}"
        ) from error
    _check_image_in_registry(reference, cluster_config.registry.url)

    run = RunRequest(experiment, "", run_name, list(overrides), config=None)
    env = {
        "TERRA_LAB_IMAGE": str(reference),
        "TERRA_LAB_COMMIT": commit,
        "TERRA_LAB_CLUSTER": cluster,
    }
    job = job_spec(run, cluster, cluster_config, resources, reference, env, wandb_project)
    run_dir = job.run_dir
    backend = make_backend(cluster_config)
    try:
        job_id = backend.submit(job)
    except (RuntimeError, OSError, ValueError) as error:
        raise LaunchFailed(
            f"submitting to {cluster} failed: {command.one_line(error)}; no job was submitted"
        ) from error
    say(f"[resubmit] {experiment} run {run_name} on {cluster}: job {job_id}, image {reference}")
    say(f"[resubmit] logs: {backend.follow_hint(job_id)}")
    status = backend.status(job_id)
    if not wait:
        return ResubmitResult(job_id, str(reference), run_dir, status.state, status.detail)
    shown_state, shown_line = None, ""
    while True:
        if status.state != shown_state:
            say(f"[resubmit] job {job_id}: {status.state.value} {status.detail}".rstrip())
            shown_state = status.state
        if status.state.finished:
            return ResubmitResult(job_id, str(reference), run_dir, status.state, status.detail)
        if (line := _last_log_line(backend, job_id)) and line != shown_line:
            say(f"[resubmit] job {job_id}: {line[:200]}")
            shown_line = line
        time.sleep(poll_seconds)
        status = backend.status(job_id)


def _last_log_line(backend: Backend, job_id: str) -> str:
    """The job's newest output line (its progress), "" while it has none or cannot be read."""
    try:
        lines = [line.strip() for line in backend.logs(job_id).splitlines() if line.strip()]
    except (OSError, KeyError, RuntimeError):
        return ""
    return lines[-1] if lines else ""
