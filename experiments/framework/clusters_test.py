"""Cluster roots: local runs go to the workspace's runs/, jobs use the mounted roots, other
clusters come from the launcher, unknown names are errors listing the known ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.framework import clusters


def test_local_runs_go_to_the_bazel_workspace(tmp_path: Path) -> None:
    spec = clusters.resolve_cluster("local", {"BUILD_WORKSPACE_DIRECTORY": str(tmp_path)})
    assert spec.is_local and spec.run_root == str(tmp_path / "runs") and spec.data_dir is None


def test_local_without_bazel_uses_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert clusters.resolve_cluster("local", {}).run_root == str(tmp_path / "runs")


def test_environment_roots_win(tmp_path: Path) -> None:
    environ = {"TERRA_RUN_ROOT": "/mnt/runs", "TERRA_DATA_DIR": "/mnt/data"}
    local = clusters.resolve_cluster("local", environ)
    assert (local.run_root, local.data_dir) == ("/mnt/runs", "/mnt/data")
    inside_a_job = clusters.resolve_cluster("slurm", environ)
    assert not inside_a_job.is_local and inside_a_job.run_root == "/mnt/runs"


def test_other_clusters_come_from_the_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {"gpu": clusters.launcher_api.ClusterRoots(Path("/shared/runs"), Path("/shared/data"))}
    monkeypatch.setattr(clusters.launcher_api, "cluster_roots", table.get)
    spec = clusters.resolve_cluster("gpu", {})
    assert (spec.run_root, spec.data_dir, spec.is_local) == ("/shared/runs", "/shared/data", False)
    with pytest.raises(clusters.UnknownClusterError, match="unknown cluster 'moon'.*local"):
        clusters.resolve_cluster("moon", {})


def test_a_broken_launcher_configuration_is_reported_as_such(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(name: str) -> None:
        raise clusters.launcher_api.ClusterConfigError("clusters.yaml: bad key")

    monkeypatch.setattr(clusters.launcher_api, "cluster_roots", broken)
    with pytest.raises(clusters.UnknownClusterError, match="unknown cluster .gpu.*bad key"):
        clusters.resolve_cluster("gpu", {})
