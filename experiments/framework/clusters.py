"""Where a cluster keeps runs and data, as far as building a config needs to know.

`local` is built in: runs go to `<workspace>/runs` (launcher/workspace.py says which
checkout that is) and, without a configured data folder, training uses the embedded
synthetic dataset. Other clusters come from the launcher's cluster configuration
(launcher/clusters.yaml, asked through launcher.api), which owns backends and registries;
this module reads only their run and data roots.

Environment overrides (useful on any cluster): TERRA_RUN_ROOT replaces the run root,
TERRA_DATA_DIR the data folder.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from launcher import api as launcher_api

LOCAL = "local"


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """What the framework needs to know about a cluster.

    Attributes:
        name: as typed on the command line.
        run_root: folder that holds `<project>/<run>/` run folders.
        data_dir: the training data folder; None: use the embedded synthetic dataset.
        is_local: runs in this process (no scheduler, no image).
    """

    name: str
    run_root: str
    data_dir: str | None
    is_local: bool


class UnknownClusterError(ValueError):
    """The cluster name is neither `local` nor in the launcher's configuration."""


def launcher_cluster_names() -> list[str]:
    """The clusters of launcher/clusters.yaml; none when it cannot be read (the error that
    matters is reported by whoever needed the unknown cluster)."""
    try:
        return launcher_api.cluster_names()
    except (OSError, ValueError):
        return []


def resolve_cluster(name: str, environ: Mapping[str, str] | None = None) -> ClusterSpec:
    """The ClusterSpec for `name` (see the module docstring for the sources)."""
    environ = os.environ if environ is None else environ
    run_root_env = environ.get("TERRA_RUN_ROOT") or None
    data_dir_env = environ.get("TERRA_DATA_DIR") or None
    if name == LOCAL:
        return ClusterSpec(
            name=name,
            run_root=run_root_env or str(launcher_api.workspace_root(environ) / "runs"),
            data_dir=data_dir_env,
            is_local=True,
        )
    if run_root_env:
        # Inside a launched job: the backend mounts the roots and says where (the launcher's
        # clusters.yaml describes the submitting machine, not the container).
        return ClusterSpec(name=name, run_root=run_root_env, data_dir=data_dir_env, is_local=False)
    try:
        roots = launcher_api.cluster_roots(name)
    except (OSError, ValueError) as error:  # clusters.yaml missing or malformed
        raise UnknownClusterError(
            f"unknown cluster {name!r}: local is built in, and the launcher's cluster list "
            f"(launcher/clusters.yaml) could not be read: {error}"
        ) from error
    if roots is None:
        known = sorted({LOCAL, *launcher_cluster_names()})
        raise UnknownClusterError(
            f"unknown cluster {name!r}; known clusters: {', '.join(known)}. Clusters other "
            "than local are configured in launcher/clusters.yaml."
        )
    data_dir = str(roots.data_dir) if roots.data_dir else None
    return ClusterSpec(name=name, run_root=str(roots.run_root), data_dir=data_dir, is_local=False)
