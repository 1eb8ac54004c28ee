"""`services --nodes`: only `start slurm` takes it, and only a count the dev cluster can run.

Both refusals come before any service is touched (no daemon, no root needed).
"""

import pytest

from tools.services import services_main


@pytest.mark.parametrize(
    "argv",
    [
        ["stop", "slurm", "--nodes=2"],
        ["status", "slurm", "--nodes=2"],
        ["start", "docker", "--nodes=2"],
    ],
)
def test_nodes_is_refused_outside_start_slurm(argv, tmp_path, capsys):
    assert services_main.main([*argv, f"--state_dir={tmp_path}"]) == 2
    assert (
        "--nodes reshapes the dev Slurm cluster: use it with start slurm" in capsys.readouterr().err
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("nodes", ["0", "9"])
def test_a_node_count_the_dev_cluster_cannot_run_is_refused(nodes, tmp_path, capsys):
    assert (
        services_main.main(["start", "slurm", f"--nodes={nodes}", f"--state_dir={tmp_path}"]) == 2
    )
    assert "the dev Slurm cluster has 1 to 8 nodes" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
