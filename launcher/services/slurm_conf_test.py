"""The dev Slurm cluster's slurm.conf and node shape, without starting a daemon.

services_test starts the daemons for real (one node, then the same state reshaped to two);
these pin what that relies on: per-node ports and files, the split of the host's cores, and
that the shape persists in slurm.conf so a later start without --nodes keeps it.
"""

import re

import pytest

from launcher.services import services


def _node_lines(conf: str) -> dict[str, dict[str, str]]:
    """{NodeName: {key: value}} of a slurm.conf text."""
    nodes = {}
    for line in conf.splitlines():
        if line.startswith("NodeName="):
            fields = dict(field.split("=", 1) for field in line.split())
            nodes[fields["NodeName"]] = fields
    return nodes


def _setting(conf: str, key: str) -> str:
    return re.search(rf"^{key}=(\S+)$", conf, re.MULTILINE).group(1)


def test_two_nodes_get_their_own_names_ports_and_half_of_the_host(tmp_path):
    slurm = services.Slurm(tmp_path, slurmctld_port=7017, slurmd_port=7018, num_nodes=2)
    conf = slurm.conf_text(cpus=2, memory_mb=8000)
    nodes = _node_lines(conf)
    assert list(nodes) == ["devnode1", "devnode2"]
    assert [nodes[name]["Port"] for name in nodes] == ["7018", "7019"]
    assert [nodes[name]["CPUs"] for name in nodes] == ["1", "1"]  # 2 cores, one per node
    assert [nodes[name]["RealMemory"] for name in nodes] == ["4000", "4000"]
    # Every node is a slurmd on this host, reached on loopback by address, not by its name,
    # and each at an address of its own, as real nodes are (torchrun tells nodes apart by it).
    assert [nodes[name]["NodeAddr"] for name in nodes] == ["127.0.0.1", "127.0.0.2"]
    assert [nodes[name]["NodeHostname"] for name in nodes] == ["127.0.0.1", "127.0.0.2"]
    assert _setting(conf, "SlurmctldPort") == "7017"
    for partition in ("debug", "batch"):
        assert f"PartitionName={partition} Nodes=devnode1,devnode2 " in conf


def test_two_nodes_keep_their_spool_pid_and_log_files_apart(tmp_path):
    conf = services.Slurm(tmp_path, num_nodes=2).conf_text(cpus=2, memory_mb=8000)
    # %n: slurmd substitutes the name it was started with (-N devnode1), so two slurmd on
    # one host never share a spool directory, a pid file or a log.
    assert _setting(conf, "SlurmdSpoolDir") == f"{tmp_path}/spool/%n"
    assert _setting(conf, "SlurmdPidFile") == f"{tmp_path}/slurmd-%n.internal.pid"
    assert _setting(conf, "SlurmdLogFile") == f"{tmp_path}/slurmd-%n.log"


def test_one_node_keeps_the_clusters_original_conf(tmp_path):
    conf = services.Slurm(tmp_path, slurmd_port=7018).conf_text(cpus=2, memory_mb=8000)
    assert _node_lines(conf) == {
        "localhost": {
            "NodeName": "localhost",
            "NodeAddr": "127.0.0.1",
            "CPUs": "2",
            "RealMemory": "8000",
            "State": "UNKNOWN",
        }
    }
    assert _setting(conf, "SlurmdPort") == "7018"
    assert _setting(conf, "SlurmdSpoolDir") == f"{tmp_path}/spool"
    assert _setting(conf, "SlurmdLogFile") == f"{tmp_path}/slurmd.log"


def test_each_slurmd_of_several_nodes_runs_under_its_nodes_address_as_host_name(tmp_path):
    # NoInAddrAny: slurmd listens where its host name resolves; a numeric name resolves to
    # itself, so devnode2's slurmd listens on 127.0.0.2, where the controller dials it.
    slurm = services.Slurm(tmp_path, num_nodes=2)
    argv = slurm._slurmd_argv("devnode2")
    assert argv[1:3] == ["--uts", "--"] and argv[0].endswith("/unshare")
    assert argv[3:7] == ["/bin/sh", "-c", 'hostname "$0" && exec "$@"', "127.0.0.2"]
    assert argv[7].endswith("/slurmd") and argv[8:] == ["-D", "-f", str(slurm.conf), "-N",
                                                         "devnode2"]  # fmt: skip
    # One node keeps the host's name: its slurmd is started as it always was.
    one = services.Slurm(tmp_path)._slurmd_argv("localhost")
    assert one[0].endswith("/slurmd") and one[1:] == ["-D", "-f", str(slurm.conf), "-N",
                                                      "localhost"]  # fmt: skip


def test_nodes_are_never_given_less_than_one_cpu(tmp_path):
    conf = services.Slurm(tmp_path, num_nodes=3).conf_text(cpus=2, memory_mb=600)
    nodes = _node_lines(conf)
    assert [fields["CPUs"] for fields in nodes.values()] == ["1", "1", "1"]
    assert [fields["RealMemory"] for fields in nodes.values()] == ["256"] * 3


def test_the_shape_persists_in_slurm_conf_and_no_nodes_keeps_it(tmp_path):
    assert services.Slurm(tmp_path).nodes == ["localhost"]  # a fresh state: one node
    tmp_path.joinpath("slurm.conf").write_text(
        services.Slurm(tmp_path, num_nodes=2).conf_text(cpus=2, memory_mb=8000)
    )
    # What a launch does (services.slurm().start(), no node count): the cluster stays at two.
    assert services.Slurm(tmp_path).nodes == ["devnode1", "devnode2"]
    assert services.Slurm(tmp_path).configured_nodes() == ["devnode1", "devnode2"]
    assert services.Slurm(tmp_path, num_nodes=1).nodes == ["localhost"]


@pytest.mark.parametrize("count", [0, services.MAX_DEV_NODES + 1])
def test_a_node_count_out_of_range_is_refused_with_the_range(tmp_path, count):
    with pytest.raises(ValueError, match=rf"1 to {services.MAX_DEV_NODES} nodes.*--nodes"):
        services.Slurm(tmp_path, num_nodes=count)
