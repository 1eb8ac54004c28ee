"""launcher.api.job_states: what a study's `status` asks of a cluster, for many jobs at once."""

import os
from pathlib import Path

import pytest

from launcher import api

CLUSTERS = Path(__file__).with_name("clusters.yaml").read_text()


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    (tmp_path / "ws" / "launcher").mkdir(parents=True)
    (tmp_path / "ws" / "launcher" / "clusters.yaml").write_text(CLUSTERS)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "ws"


def _local_job(cache: Path, job_id: str, exit_code: str) -> None:
    """A finished local job as the local backend leaves it: its folder, indexed by id."""
    job_dir = cache / "jobs-folders" / job_id
    job_dir.mkdir(parents=True)
    (job_dir / "exit_code").write_text(exit_code)
    index = cache / "terra-lab" / "jobs" / "local"
    index.mkdir(parents=True, exist_ok=True)
    (index / job_id).symlink_to(job_dir)


def test_states_of_several_local_jobs_at_once(workspace, tmp_path):
    _local_job(tmp_path / "cache", "nano_s0-20260101T000000-aaaaaa", "0")
    _local_job(tmp_path / "cache", "nano_s1-20260101T000000-bbbbbb", "1")
    states = api.job_states(
        "local",
        ["nano_s0-20260101T000000-aaaaaa", "nano_s1-20260101T000000-bbbbbb", "nano_s2-1"],
        workspace,
    )
    assert states["nano_s0-20260101T000000-aaaaaa"].state is api.JobState.COMPLETED
    assert states["nano_s1-20260101T000000-bbbbbb"].state is api.JobState.FAILED
    assert states["nano_s2-1"].state is api.JobState.UNKNOWN
    assert "no local job 'nano_s2-1'" in states["nano_s2-1"].detail


def test_a_hostile_id_is_refused_before_anything_is_asked(workspace, tmp_path):
    _local_job(tmp_path / "cache", "nano_s0-1", "0")
    with pytest.raises(ValueError, match="'../../etc/passwd' is not a job id"):
        api.job_states("local", ["nano_s0-1", "../../etc/passwd"], workspace)
    with pytest.raises(ValueError, match="<array id>_<task>"):
        api.job_states("slurm", ["12_0", "12-0"], workspace)


def test_an_unknown_cluster_names_the_known_ones(workspace):
    with pytest.raises(api.ClusterConfigError, match="unknown cluster 'mars'"):
        api.job_states("mars", ["1"], workspace)


def test_a_scheduler_that_does_not_answer_is_a_failure_not_unknown_jobs(
    workspace, tmp_path, monkeypatch
):
    fake = tmp_path / "bin" / "scontrol"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Unable to contact slurm controller (connect failure)' >&2\n"
                    "exit 1\n")  # fmt: skip
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    with pytest.raises(api.LaunchFailed, match="cannot ask slurm for the state of job 12_1"):
        api.job_states("slurm", ["12_1"], workspace)
