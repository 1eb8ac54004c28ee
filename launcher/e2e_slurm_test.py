"""End to end on the dev Slurm cluster: `nano launch` with 2 CPU processes reaches COMPLETED.

The launch goes through the experiment's own CLI from a pushed scratch clone of this working
tree: gate (real `bazel test` of nano's launch tests), image, push to the
embedded registry, sbatch; the job pulls the image by digest, runs torchrun with two gloo
processes under bubblewrap, and leaves metrics and checkpoints in the run folder.
A group launch (launcher.api.launch_runs, what a study's `launch` calls) of two nano runs
goes to Slurm as one job array whose two tasks both complete.
"""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launcher import api, testing
from launcher.backends.backend import JobState
from launcher.backends.slurm import SlurmBackend
from launcher.registry.client import RegistryClient

SOURCE = Path(__file__).resolve().parents[1]
PROJECT = "2026_01_01_launcher_e2e"
RUN = "nano_e2e_slurm"


@pytest.fixture(scope="module")
def env():
    return testing.e2e_environment()


@pytest.fixture(scope="module")
def cluster(env):
    """The dev registry and Slurm cluster (the developer's, started here if not running)."""
    with testing.dev_services("registry", "slurm") as running:
        yield running["slurm"]


@pytest.fixture(scope="module")
def workspace(env, cluster):
    # The clusters.yaml of the scratch clone pins the daemonless runtime: this test is the
    # one that covers bubblewrap (e2e_local_test covers Docker).
    text = (SOURCE / "launcher" / "clusters.yaml").read_text()
    slurm_section = text.index("\n  slurm:\n")
    pinned = text[:slurm_section] + text[slurm_section:].replace(
        "    runtime: auto\n", "    runtime: bwrap\n", 1
    )
    work = testing.scratch_workspace(
        SOURCE, testing.E2E_ROOT / "ws", edits={"launcher/clusters.yaml": pinned}
    )
    yield work
    testing.shutdown_bazel(work, env)


def _logged_steps(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if line.strip()]


def test_nano_with_two_cpu_processes_completes_on_slurm(workspace, env, cluster):
    commit = testing.git(workspace, "rev-parse", "HEAD")
    start = time.monotonic()
    result = testing.run_experiment(
        workspace,
        "nano",
        ["launch", RUN, "slurm", "--launch.num_gpus=2",
         f"--trainer.callbacks.wandb.project={PROJECT}", *testing.NANO_SMOKE_OVERRIDES],
        env,
    )  # fmt: skip
    launched = time.monotonic() - start
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    job_id = re.search(r"job id\s+(\d+)", result.stderr).group(1)
    assert f"project {PROJECT}, run {RUN}" in result.stderr
    image = re.search(r"image\s+(\S+@sha256:[0-9a-f]{64})", result.stderr).group(1)

    backend = SlurmBackend(cluster.conf, testing.real_home() / ".cache/terra-lab/jobs/slurm")
    status = testing.wait_for_job(backend, job_id, timeout_s=600)
    finished = time.monotonic() - start
    print(f"e2e slurm: launch {launched:.0f} s, job finished {finished:.0f} s after the command")
    assert status.state is JobState.COMPLETED, testing.job_report(backend, job_id, status)

    run_dir = workspace / "runs" / PROJECT / RUN
    steps = _logged_steps(run_dir)
    assert steps == [1, 2]
    assert (run_dir / "checkpoints" / "step_2").is_dir()
    # The recipe's in-loop evaluation ran on rank 0 inside the image, after the last step.
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0.0 <= last["eval/landcover/knn_accuracy"] <= 1.0
    provenance = json.loads((run_dir / "provenance.json").read_text())
    (run,) = provenance["starts"]
    assert run["world_size"] == 2  # torchrun rendezvous: two processes joined
    assert run["image"] == image and run["commit"] == commit and run["job_id"] == job_id
    registry = RegistryClient("http://127.0.0.1:5000", "terra-lab")
    assert commit in registry.tags()
    assert registry.get_manifest(commit)[1] == image.rsplit("@", 1)[1]


def _newest_checkpoint_step(run_dir: Path) -> int:
    """The step of the run's newest complete checkpoint (0 with none).

    Read from the run folder's layout, as any user of a run folder would (the launcher runs
    model code only as commands): a checkpoint is written under a temporary name, renamed to
    `checkpoints/step_<N>` and its meta.json written last, so a `step_<N>` with one is whole.
    """
    steps = [
        int(path.name.removeprefix("step_"))
        for path in (run_dir / "checkpoints").glob("step_*")
        if path.name.removeprefix("step_").isdigit() and (path / "meta.json").is_file()
    ]
    return max(steps, default=0)


def test_a_requeued_job_resumes_from_its_checkpoint(workspace, env, cluster):
    run = "nano_e2e_requeue"
    # 60 steps keep the job running for a few seconds past its second checkpoint (a smoke step
    # takes about 0.3 s), so the requeue lands mid-run; with the newest checkpoint kept, a
    # given step's checkpoint lives for one step only, too short to wait for.
    max_steps = 60
    overrides = [o for o in testing.NANO_SMOKE_OVERRIDES if not o.startswith("--trainer.max_")]
    result = testing.run_experiment(
        workspace,
        "nano",
        ["launch", run, "slurm", "--launch.num_gpus=2", f"--trainer.max_steps={max_steps}",
         f"--trainer.callbacks.wandb.project={PROJECT}", *overrides,
         # resume is the subject here; the other test checks the in-loop evaluation
         "--trainer.callbacks.evaluator.enabled=false"],
        env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    job_id = re.search(r"job id\s+(\d+)", result.stderr).group(1)
    run_dir = workspace / "runs" / PROJECT / run
    backend = SlurmBackend(cluster.conf, testing.real_home() / ".cache/terra-lab/jobs/slurm")
    testing.wait_while_job_runs(
        backend,
        job_id,
        lambda: _newest_checkpoint_step(run_dir) >= 2,
        "a checkpoint of step 2 or later",
        timeout_s=600,  # as long as `wait_for_job` gives a whole job
    )
    # What a preemption does: Slurm puts the job back in the queue and starts it again.
    subprocess.run(["scontrol", "requeue", job_id], env=cluster.env(), check=True)
    status = testing.wait_for_job(backend, job_id, timeout_s=600)
    assert status.state is JobState.COMPLETED, testing.job_report(backend, job_id, status)
    assert "restarts 1" in status.detail, "the job ended before the requeue reached it"
    starts = json.loads((run_dir / "provenance.json").read_text())["starts"]
    assert [start["job_id"] for start in starts] == [job_id, job_id]  # one job, two starts
    # Resumed, not restarted: the second start began at a checkpoint, and the metrics read
    # as one run (a restart from scratch would log step 1 again).
    assert starts[0]["resumed_at_step"] == 0 and starts[1]["resumed_at_step"] >= 2
    assert _logged_steps(run_dir) == list(range(1, max_steps + 1))
    assert "resumed from /app/runs/" in backend.logs(job_id)


# A study's launch in miniature: two seeds of nano through launcher.api, as one job array.
_LAUNCH_ARRAY = """
import json, sys
from launcher import api
project, array, overrides = sys.argv[1], sys.argv[2], sys.argv[3:]
runs = [
    api.RunRequest("nano", "//experiments:nano", f"{array}_s{seed}",
                   [f"--seed={seed}", f"--trainer.callbacks.wandb.project={project}", *overrides],
                   {"seed": seed})
    for seed in (0, 1)
]
result = api.launch_runs(runs, "slurm", project, api.LaunchSettings(num_gpus=1), array_name=array)
print(json.dumps({"image": result.image, "jobs": [run.job_id for run in result.runs]}))
"""


def test_a_job_array_of_two_nano_runs_completes_on_slurm(workspace, env, cluster, monkeypatch):
    array = "nano_e2e_array"
    overrides = list(testing.NANO_SMOKE_OVERRIDES)
    result = subprocess.run(
        [sys.executable, "-c", _LAUNCH_ARRAY, PROJECT, array, *overrides,
         "--trainer.callbacks.evaluator.enabled=false"],
        cwd=workspace,
        env=dict(env, BUILD_WORKSPACE_DIRECTORY=str(workspace), PYTHONPATH=str(workspace)),
        capture_output=True,
        text=True,
        # The gate's nested `bazel test` of nano's launch tests alone ran past 15 minutes on 2
        # cores shared with other builds (load 5); 30 leave room for the image and sbatch.
        timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    launched = json.loads(result.stdout.strip().splitlines()[-1])
    array_id = launched["jobs"][0].partition("_")[0]
    assert launched["jobs"] == [f"{array_id}_0", f"{array_id}_1"]
    assert "launched 2 runs at" in result.stderr and f"(job array {array})" in result.stderr
    assert result.stderr.count("[gate] bazel test: the ") == 1  # one gate for the group

    backend = SlurmBackend(cluster.conf, testing.real_home() / ".cache/terra-lab/jobs/slurm")
    for seed, job_id in enumerate(launched["jobs"]):
        status = testing.wait_for_job(backend, job_id, timeout_s=600)
        assert status.state is JobState.COMPLETED, testing.job_report(backend, job_id, status)
        run_dir = workspace / "runs" / PROJECT / f"{array}_s{seed}"
        assert _logged_steps(run_dir) == [1, 2]
        assert f"--seed={seed}" in (run_dir / "overrides.txt").read_text()
        (start,) = json.loads((run_dir / "provenance.json").read_text())["starts"]
        assert start["job_id"] == job_id and start["image"] == launched["image"]
        # The task's own log (slurm-<array>_<task>.out), found from its id.
        assert f"[terra-lab] job {job_id} (restart 0)" in backend.logs(job_id)
    # What a study's `status` asks: both tasks by id, through the public API.
    monkeypatch.setenv("XDG_CACHE_HOME", str(testing.real_home() / ".cache"))
    states = api.job_states("slurm", launched["jobs"], workspace)
    assert [states[job_id].state for job_id in launched["jobs"]] == [JobState.COMPLETED] * 2
