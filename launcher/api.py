"""The launcher's public API: all that experiments import from launcher/.

The dependency is one-way: experiments call these; the launcher never imports experiments
or model code and runs them only as commands (the gate's `bazel test`, the job's CLI). The
layer contracts (tools/lint) allow `experiments` to import `launcher.api` and nothing else
of the launcher.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from launcher import clusters
from launcher.backends.backend import JobState, JobStatus
from launcher.cli import command
from launcher.gate.gate import LaunchRefused, resolve_commit
from launcher.launch import (
    GroupLaunchResult,
    LaunchFailed,
    LaunchResult,
    RunRequest,
    launch_experiment,
    launch_runs,
    make_backend,
)
from launcher.resubmit import ResubmitResult, resubmit_image
from launcher.settings import PRIORITIES, JobResources, LaunchSettings
from launcher.workspace import user_path, workspace_root

__all__ = [
    "PRIORITIES",
    "ClusterConfigError",
    "ClusterRoots",
    "GroupLaunchResult",
    "JobResources",
    "JobState",
    "JobStatus",
    "LaunchFailed",
    "LaunchRefused",
    "LaunchResult",
    "LaunchSettings",
    "ResubmitResult",
    "RunRequest",
    "cluster_names",
    "cluster_roots",
    "job_states",
    "launch_experiment",
    "launch_runs",
    "resolve_commit",
    "resubmit_image",
    "user_path",
    "workspace_root",
]

ClusterConfigError = clusters.ClusterConfigError


@dataclasses.dataclass(frozen=True)
class ClusterRoots:
    """Where a cluster keeps runs and data, on the submitting machine.

    Attributes:
        run_root: holds `<project>/<run>/` run folders.
        data_dir: the training data folder; None when it does not exist here.
    """

    run_root: Path
    data_dir: Path | None


def cluster_names(workspace: Path | None = None) -> list[str]:
    """The clusters of the checkout's launcher/clusters.yaml (ClusterConfigError if malformed)."""
    return sorted(clusters.load(workspace or workspace_root()).clusters)


def cluster_roots(name: str, workspace: Path | None = None) -> ClusterRoots | None:
    """The roots of cluster `name`, or None when clusters.yaml does not define it.

    Inside a job the backend sets TERRA_RUN_ROOT and TERRA_DATA_DIR to the mount points
    instead (launcher/backends/backend.py), so this is only asked on the host.
    """
    settings = clusters.load(workspace or workspace_root())
    if name not in settings.clusters:
        return None
    cluster = settings.clusters[name]
    data_dir = cluster.data_root if cluster.data_root.is_dir() else None
    return ClusterRoots(run_root=cluster.run_root, data_dir=data_dir)


def job_states(
    cluster: str, job_ids: Sequence[str], workspace: Path | None = None
) -> dict[str, JobStatus]:
    """{job id: its state and detail} on cluster `name`, for ids launch returned.

    `state` is a JobState: PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, PREEMPTED (put
    back in the queue by the scheduler; it runs again and resumes) or UNKNOWN (the
    scheduler no longer knows the job, or there is no record of it; `detail` says which).
    Slurm array tasks are asked by their `<array id>_<index>` ids.

    Raises:
        ClusterConfigError: clusters.yaml does not define `cluster`, or is malformed.
        ValueError: an id cannot be a job id of that cluster (nothing was asked).
        LaunchFailed: the scheduler does not answer (e.g. the Slurm controller is down).
    """
    backend = make_backend(clusters.load(workspace or workspace_root()).cluster(cluster))
    for job_id in job_ids:
        if problem := backend.job_id_problem(job_id):
            raise ValueError(problem)
    states: dict[str, JobStatus] = {}
    for job_id in job_ids:
        try:
            states[job_id] = backend.status(job_id)
        except KeyError as error:  # the local backend has no record of this id
            states[job_id] = JobStatus(JobState.UNKNOWN, str(error.args[0] if error.args else ""))
        except (RuntimeError, OSError) as error:
            raise LaunchFailed(
                f"cannot ask {cluster} for the state of job {job_id}: {command.one_line(error)}"
            ) from error
    return states
