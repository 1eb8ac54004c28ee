"""LaunchSettings: the one `launch` section, checked at construction and fitted to a cluster."""

import dataclasses
from pathlib import Path

import pytest

from launcher import clusters
from launcher.settings import LaunchSettings

CLUSTERS = Path(__file__).with_name("clusters.yaml")


def _cluster(name: str, **changes) -> clusters.ClusterConfig:
    cluster = clusters.load(CLUSTERS.parent.parent, CLUSTERS).cluster(name)
    return dataclasses.replace(cluster, **changes)


def test_defaults_are_one_node_one_gpu_normal_priority_preemptible():
    settings = LaunchSettings()
    assert (settings.num_nodes, settings.num_gpus, settings.priority) == (1, 1, "normal")
    assert settings.preemptible and settings.clusters == ()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_nodes": 0}, "launch.num_nodes must be >= 1"),
        ({"num_gpus": -1}, "launch.num_gpus must be >= 0"),
        ({"priority": "asap"}, "launch.priority must be one of low, normal, high, urgent"),
    ],
)
def test_a_bad_value_names_its_key(changes, message):
    with pytest.raises(ValueError, match=message):
        LaunchSettings(**changes)


def test_positional_values_are_refused():
    with pytest.raises(TypeError):
        LaunchSettings(2)  # type: ignore[misc]


def test_resources_on_a_gpu_cluster_follow_the_settings():
    cluster = _cluster("slurm", gpus_per_node=8, partitions=("batch", "debug"))
    resources = LaunchSettings(num_nodes=2, num_gpus=8, priority="high").build(cluster)
    assert (resources.num_nodes, resources.procs_per_node, resources.gpus_per_node) == (2, 8, 8)
    assert resources.partitions == ("batch", "debug")  # the cluster's order when none is given
    assert resources.priority_args == ("--nice=100",)
    assert resources.requeue


def test_on_a_cpu_cluster_gpus_become_cpu_processes_and_zero_is_one():
    cluster = _cluster("slurm")  # gpus_per_node: 0
    assert LaunchSettings(num_gpus=4).build(cluster).gpus_per_node == 0
    assert LaunchSettings(num_gpus=4).build(cluster).procs_per_node == 4
    assert LaunchSettings(num_gpus=0).build(cluster).procs_per_node == 1


def test_partitions_given_in_the_settings_replace_the_clusters_list():
    cluster = _cluster("slurm", partitions=("batch",))
    resources = LaunchSettings(clusters=("h100", "a100"), preemptible=False).build(cluster)
    assert resources.partitions == ("h100", "a100") and not resources.requeue


def test_more_gpus_than_a_node_has_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="num_gpus=16 but slurm nodes have 8 GPUs; use more nodes"):
        LaunchSettings(num_gpus=16).build(_cluster("slurm", gpus_per_node=8))
