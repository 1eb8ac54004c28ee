"""`LaunchSettings`: the `launch` section of an experiment config, the launcher's one type for it.

An experiment's config holds it (`--launch.num_gpus=8` sets it), the launcher reads it, and
`build(cluster)` turns it into the resources of one job on that cluster. It imports nothing
of the launcher's machinery, so an experiment binary can hold it without the image code.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from models.config.configurable import Configurable

if TYPE_CHECKING:
    from launcher.clusters import ClusterConfig

PRIORITIES = ("low", "normal", "high", "urgent")


@dataclasses.dataclass(frozen=True)
class JobResources:
    """What one job asks of the scheduler (the resource half of a backend's JobSpec)."""

    num_nodes: int
    procs_per_node: int
    gpus_per_node: int
    partitions: tuple[str, ...]
    priority_args: tuple[str, ...]
    requeue: bool


@dataclasses.dataclass(kw_only=True)
class LaunchSettings(Configurable[JobResources]):
    """How `launch` asks a cluster for resources.

    Attributes:
        num_nodes: machines.
        num_gpus: GPUs (= training processes) per machine. 1 is the reference's default;
            its base model trained on 8 (pass --launch.num_gpus=8). On a cluster without
            GPUs the same number of CPU processes (gloo) runs, at least one.
        clusters: scheduler partitions to try, in order (for availability); empty: the
            cluster's own list (launcher/clusters.yaml).
        priority: one of PRIORITIES; `normal` for experiments, `high` only when needed.
        preemptible: the job may be preempted and requeued (it resumes from its newest
            checkpoint).

    There is no allow-dirty switch: the launcher's gate always refuses uncommitted changes.
    """

    num_nodes: int = 1
    num_gpus: int = 1
    clusters: tuple[str, ...] = ()
    priority: str = "normal"
    preemptible: bool = True

    def __post_init__(self) -> None:
        self.clusters = tuple(self.clusters)
        if self.num_nodes < 1:
            raise ValueError(f"launch.num_nodes must be >= 1, got {self.num_nodes}")
        if self.num_gpus < 0:
            raise ValueError(f"launch.num_gpus must be >= 0, got {self.num_gpus}")
        if self.priority not in PRIORITIES:
            raise ValueError(
                f"launch.priority must be one of {', '.join(PRIORITIES)}, got {self.priority!r}"
            )

    @property
    def procs_per_node(self) -> int:
        return max(1, self.num_gpus)

    def build(self, cluster: ClusterConfig) -> JobResources:
        """The resources of one job on `cluster`; a bad fit raises ValueError naming the key."""
        if cluster.gpus_per_node and self.num_gpus > cluster.gpus_per_node:
            raise ValueError(
                f"launch.num_gpus={self.num_gpus} but {cluster.name} nodes have "
                f"{cluster.gpus_per_node} GPUs; use more nodes (launch.num_nodes)"
            )
        return JobResources(
            num_nodes=self.num_nodes,
            procs_per_node=self.procs_per_node,
            gpus_per_node=self.num_gpus if cluster.gpus_per_node else 0,
            partitions=tuple(self.clusters or cluster.partitions),
            priority_args=tuple(cluster.priority_args(self.priority)),
            requeue=self.preemptible,
        )
