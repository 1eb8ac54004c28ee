"""The launcher's public API: all that experiments import from launcher/.

The dependency is one-way: experiments call these; the launcher never imports experiments
or model code and runs them only as commands (the gate's `bazel test`, the job's CLI). The
layer contracts (tools/lint) allow `experiments` to import `launcher.api` and nothing else
of the launcher.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from launcher import clusters
from launcher.gate.gate import LaunchRefused, resolve_commit
from launcher.launch import LaunchFailed, LaunchResult, launch_experiment
from launcher.resubmit import ResubmitResult, resubmit_image
from launcher.settings import PRIORITIES, JobResources, LaunchSettings
from launcher.workspace import workspace_root

__all__ = [
    "PRIORITIES",
    "ClusterConfigError",
    "ClusterRoots",
    "JobResources",
    "LaunchFailed",
    "LaunchRefused",
    "LaunchResult",
    "LaunchSettings",
    "ResubmitResult",
    "cluster_names",
    "cluster_roots",
    "launch_experiment",
    "resolve_commit",
    "resubmit_image",
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
