"""launch_experiment's refusals, in process: every problem is reported before any side effect."""

import dataclasses
import types
from pathlib import Path

import pytest

from launcher import clusters, launch, testing
from launcher.backends import slurm
from launcher.registry.client import ImageReference
from launcher.settings import LaunchSettings

PROJECT = "2026_01_01_launch_unit"
# The real ones, before the fixture replaces them, for the tests that need a real preflight.
REAL_MAKE_BACKEND, REAL_ENSURE_SERVICES = launch.make_backend, launch.ensure_services


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    work = testing.pushed_launch_workspace(tmp_path)

    def no_side_effects(*args, **kwargs):
        raise AssertionError("a refused launch must not start, build, push or submit anything")

    for name in ("ensure_services", "make_backend"):
        monkeypatch.setattr(launch, name, no_side_effects)
    monkeypatch.setattr(launch.publish, "publish_image", no_side_effects)
    monkeypatch.setattr(launch.gate, "run_group_launch_tests", no_side_effects)
    return work


def _launch(workspace, cluster="local", run_name="nano_unit", project=PROJECT, settings=None):
    return launch.launch_experiment(
        "nano",
        "//experiments:nano",
        run_name,
        cluster,
        [],
        {},
        project,
        settings or LaunchSettings(),
        workspace,
    )


def test_every_cheap_problem_is_reported_at_once(workspace):
    (workspace / "experiments" / "nano.py").write_text("print('edited')\n")
    with pytest.raises(launch.LaunchRefused) as refused:
        _launch(workspace, run_name="my run", project="smoke")
    reasons = " | ".join(refused.value.reasons)
    assert len(refused.value.reasons) == 3, reasons
    assert "YYYY_MM_DD_description" in reasons
    assert "run name 'my run'" in reasons
    assert "working tree is dirty" in reasons


def test_a_commit_holding_the_wandb_key_is_refused_before_any_test(workspace, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123")
    (workspace / "experiments" / "keys.py").write_text("KEY = '0123456789abcdef0123'\n")
    testing.commit_all(workspace, "oops")
    testing.git(workspace, "push", "-q", "origin", "main")
    with pytest.raises(launch.LaunchRefused, match=r"experiments/keys.py contains .*WANDB_API_KEY"):
        _launch(workspace)


def test_an_unpushed_commit_is_refused(workspace):
    (workspace / "experiments" / "nano.py").write_text("print('v2')\n")
    testing.commit_all(workspace, "local only")
    with pytest.raises(launch.LaunchRefused, match="on no remote branch"):
        _launch(workspace)


def test_an_unknown_cluster_is_refused_with_the_known_ones(workspace):
    with pytest.raises(launch.LaunchRefused, match="unknown cluster 'mars'.*local, slurm"):
        _launch(workspace, cluster="mars")


def test_a_priority_no_cluster_defines_is_refused(workspace):
    class UrgentPlus(LaunchSettings):  # past LaunchSettings' own check, as a dict could be
        def __post_init__(self) -> None:
            pass

    with pytest.raises(launch.LaunchRefused, match="priority must be one of low"):
        _launch(workspace, cluster="slurm", settings=UrgentPlus(priority="asap"))


def test_every_submission_of_one_run_name_gets_its_own_job_folder(tmp_path):
    folders = [launch.new_job_dir(tmp_path, PROJECT, "nano_unit") for _ in range(50)]
    assert len(set(folders)) == 50
    assert all(folder.is_dir() and folder.parent.name == "nano_unit" for folder in folders)


def test_a_head_other_than_the_resolved_commit_is_refused_before_anything_runs(workspace):
    resolved = testing.git(workspace, "rev-parse", "HEAD")
    (workspace / "later.txt").write_text("x\n")
    testing.commit_all(workspace, "a commit made after the launch began")
    testing.git(workspace, "push", "-q", "origin", "HEAD")
    with pytest.raises(launch.LaunchRefused, match="HEAD moved"):
        launch.launch_experiment(
            "nano",
            "//experiments:nano",
            "nano_unit",
            "local",
            [],
            {},
            PROJECT,
            LaunchSettings(),
            workspace,
            commit=resolved,
        )


@pytest.mark.skipif(
    Path("/etc/slurm/slurm.conf").exists(), reason="this machine has the gpu template's slurm.conf"
)
def test_the_gpu_template_is_refused_in_one_line_where_its_slurm_is_not(workspace, monkeypatch):
    # The real preflight: the template starts no service and Slurm is never asked (sinfo
    # would retry a missing slurm.conf for 60 s and print three lines).
    monkeypatch.setattr(launch, "make_backend", REAL_MAKE_BACKEND)
    monkeypatch.setattr(launch, "ensure_services", REAL_ENSURE_SERVICES)

    def no_slurm_command(*args, **kwargs):
        raise AssertionError("Slurm must not be asked without its slurm.conf")

    monkeypatch.setattr(slurm, "subprocess", types.SimpleNamespace(run=no_slurm_command))
    with pytest.raises(launch.LaunchRefused) as refused:
        _launch(workspace, cluster="gpu", run_name="nano_gpu", settings=LaunchSettings(num_gpus=8))
    [line] = str(refused.value).splitlines()
    assert "configuration /etc/slurm/slurm.conf" in line
    assert "no such Slurm cluster is reachable from here" in line


def test_a_job_gets_its_clusters_env_beside_the_launchers_variables(tmp_path):
    gpu = clusters.load(Path(__file__).parent.parent).cluster("gpu")
    gpu = dataclasses.replace(gpu, run_root=tmp_path / "runs")
    run = launch.RunRequest("nano", "", "nano_gpu", [], None)
    image = ImageReference("registry.example.org", "terra-lab", "sha256:" + "0" * 64)
    resources = LaunchSettings(num_gpus=8).build(gpu)
    job = launch.job_spec(run, "gpu", gpu, resources, image, {"TERRA_LAB_CLUSTER": "gpu"}, PROJECT)
    assert job.env == {"NCCL_DEBUG": "WARN", "TERRA_LAB_CLUSTER": "gpu"}
    assert "NCCL_DEBUG=WARN" in job.runner_args()
    assert (job.gpus_per_node, job.procs_per_node) == (8, 8)
