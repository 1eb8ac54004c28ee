"""The launch gate refuses for real: dirty tree, unpushed commit, failing test, unknown cluster.

Each launch goes through the experiment's CLI from a pushed scratch clone, must exit non-zero
with a message that says what to do, and must leave the registry and the scheduler as they
were: no new repository or tag, no new Slurm or local job.
"""

import subprocess
from pathlib import Path

import pytest

from launcher import testing
from launcher.registry.client import RegistryClient

SOURCE = Path(__file__).resolve().parents[1]
PROJECT = "2026_01_01_launcher_refusals"
# Breaks every training step (the experiment's launch tests train one) but not the config,
# so the CLI gets as far as the gate.
BREAK_TRAINING = """

def _broken_forward(self, *args, **kwargs):
    raise RuntimeError("broken on purpose by launcher/refusals_test.py")


LatentMIM.forward = _broken_forward
"""


@pytest.fixture(scope="module")
def env():
    return testing.e2e_environment()


@pytest.fixture(scope="module")
def slurm(env):
    with testing.dev_services("registry", "slurm") as running:
        yield running["slurm"]


@pytest.fixture(scope="module")
def workspace(env, slurm):
    work = testing.scratch_workspace(SOURCE, testing.E2E_ROOT / "ws")
    yield work
    testing.shutdown_bazel(work, env)


def _world(slurm) -> dict[str, object]:
    """What a refused launch must not change."""
    registry = RegistryClient("http://127.0.0.1:5000", "terra-lab")
    jobs = subprocess.run(
        ["scontrol", "show", "jobs", "-o"], env=slurm.env(), capture_output=True, text=True
    ).stdout
    local_jobs = testing.real_home() / ".cache" / "terra-lab" / "jobs" / "local"
    return {
        "repositories": registry.catalog(),
        "tags": registry.tags(),
        # Only job records count: with no job Slurm prints "No jobs in the system".
        "slurm_jobs": sorted(
            line.split()[0] for line in jobs.splitlines() if line.startswith("JobId=")
        ),
        "local_jobs": sorted(p.name for p in local_jobs.iterdir()) if local_jobs.exists() else [],
    }


def _assert_nothing_added(before: dict[str, object], slurm) -> None:
    """No image, tag or job appeared since `before`. Things may disappear: Slurm forgets a
    finished job after MinJobAge (300 s), e.g. one of the e2e test that ran just before."""
    after = _world(slurm)
    added = {key: sorted(set(after[key]) - set(before[key])) for key in after}
    assert not any(added.values()), f"a refused launch added {added}"


def _launch(workspace, env, run_name: str, cluster: str = "slurm"):
    return testing.run_experiment(
        workspace,
        "nano",
        ["launch", run_name, cluster, f"--trainer.callbacks.wandb.project={PROJECT}",
         *testing.NANO_SMOKE_OVERRIDES],
        env,
    )  # fmt: skip


def test_a_dirty_tree_is_refused(workspace, env, slurm):
    before = _world(slurm)
    (workspace / "experiments" / "nano.py").write_text(
        (workspace / "experiments" / "nano.py").read_text() + "\n# an uncommitted edit\n"
    )
    (workspace / "notes.txt").write_text("untracked\n")
    try:
        result = _launch(workspace, env, "nano_refused_dirty")
    finally:
        testing.git(workspace, "checkout", "--", ".")
        (workspace / "notes.txt").unlink()
    assert result.returncode != 0
    assert "launch refused" in result.stderr and "working tree is dirty" in result.stderr
    assert "experiments/nano.py" in result.stderr and "notes.txt" in result.stderr
    _assert_nothing_added(before, slurm)


def test_a_commit_on_no_remote_branch_is_refused(workspace, env, slurm):
    before = _world(slurm)
    (workspace / "experiments" / "nano.py").write_text(
        (workspace / "experiments" / "nano.py").read_text() + "\n# a local commit\n"
    )
    testing.commit_all(workspace, "not pushed")
    try:
        result = _launch(workspace, env, "nano_refused_unpushed")
    finally:
        testing.git(workspace, "reset", "-q", "--hard", "origin/main")
    assert result.returncode != 0
    assert "on no remote branch" in result.stderr and "git push" in result.stderr
    _assert_nothing_added(before, slurm)


def test_an_unknown_cluster_is_refused(workspace, env, slurm):
    before = _world(slurm)
    result = _launch(workspace, env, "nano_refused_cluster", cluster="mars")
    assert result.returncode != 0
    assert "unknown cluster 'mars'" in result.stderr + result.stdout
    assert "slurm" in result.stderr + result.stdout  # the message lists the known ones
    _assert_nothing_added(before, slurm)


def test_a_failing_test_is_refused(workspace, env, slurm):
    before = _world(slurm)
    module = workspace / "models" / "latent_mim" / "latent_mim.py"
    module.write_text(module.read_text() + BREAK_TRAINING)
    testing.commit_all(workspace, "break training")
    testing.git(workspace, "push", "-q", "origin", "main")
    result = _launch(workspace, env, "nano_refused_tests")
    assert result.returncode != 0
    assert "the launch tests of //experiments:nano failed" in result.stderr
    assert "nothing was pushed or submitted" in result.stderr
    _assert_nothing_added(before, slurm)
