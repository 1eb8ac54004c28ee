"""End to end: the per-modality projection study on the dev Slurm cluster, as a user runs it.

From a pushed scratch clone of this working tree, `per_modality_projection launch slurm` (at
nano width, 2 steps, no evaluation: the point is the path, not the numbers) runs one gate over
the four experiments' launch tests, pushes one image and submits the 12 runs as one job
array. Then, through the study's own commands:
  - `status` reaches 12 completed, each with its array task id;
  - a second `launch` submits nothing;
  - `compare` writes the study report (Markdown, HTML, plots);
  - `reproduce slurm base_s0` re-runs the run in its image and finds every logged step equal.
The runs' W&B offline logs carry the study as group and the variant as job type.
"""

import json
import re
import time
from pathlib import Path

import pytest

from launcher import testing

SOURCE = Path(__file__).resolve().parents[1]
STUDY = "per_modality_projection"
PROJECT = "2026_01_01_study_e2e"
SMALL = (
    "--model_size=nano",
    "--launch.num_gpus=1",
    "--trainer.max_steps=2",
    "--data_loader.global_batch_size=8",
    "--data_loader.token_budget=300",
    "--train_module.microbatch_size=8",
    "--trainer.callbacks.evaluator.enabled=false",
)


@pytest.fixture(scope="module")
def env():
    return testing.e2e_environment()


@pytest.fixture(scope="module")
def workspace(env):
    with testing.dev_services("registry", "slurm"):
        work = testing.scratch_workspace(SOURCE, testing.E2E_ROOT / "study")
        try:
            yield work
        finally:
            testing.shutdown_bazel(work, env)


def study(workspace: Path, env, *args: str):
    """The study's command line, as `bazel run //experiments/studies:<study> --` runs it."""
    return testing.run_program(
        workspace, f"experiments/studies/{STUDY}.py", list(args), env, timeout_s=2700
    )


@pytest.fixture(scope="module")
def launched(workspace, env):
    result = study(workspace, env, "launch", "slurm", f"--project={PROJECT}", *SMALL)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def test_one_launch_submits_the_twelve_runs_as_one_job_array(launched) -> None:
    ids = re.findall(r"^\s+\S+_s\d\s+(\d+_\d+)\s*$", launched.stdout, re.MULTILINE)
    assert len(ids) == 12, launched.stdout
    assert len({job.split("_")[0] for job in ids}) == 1  # one array
    assert "launch tests of 4 experiments" in launched.stderr


def test_status_reaches_completed_for_every_run(workspace, env, launched) -> None:
    deadline = time.monotonic() + 1800
    while True:
        result = study(workspace, env, "status", "slurm", f"--project={PROJECT}")
        assert result.returncode == 0, result.stderr
        if "12 runs: 12 completed" in result.stdout:
            break
        assert "failed" not in result.stdout.split("12 runs:")[-1], result.stdout
        assert time.monotonic() < deadline, result.stdout
        time.sleep(15)
    run_dir = workspace / "runs" / PROJECT / "base_encoder_per_mod_proj_s1"
    [wandb_log] = run_dir.glob("wandb/**/run-*.wandb")
    text = wandb_log.read_bytes()
    assert STUDY.encode() in text and b"base_encoder_per_mod_proj" in text


def test_a_second_launch_submits_nothing(workspace, env, launched) -> None:
    result = study(workspace, env, "launch", "slurm", f"--project={PROJECT}", *SMALL)
    assert result.returncode == 0, result.stderr
    assert "nothing to launch: all 12 runs" in result.stdout


def test_compare_writes_the_study_report(workspace, env, launched) -> None:
    result = study(workspace, env, "compare", "slurm", f"--project={PROJECT}")
    assert result.returncode == 0, result.stderr
    manifest = workspace / "runs" / PROJECT / "_studies" / STUDY / "study.json"
    report = manifest.parent / "compare"
    assert (report / "report.html").exists() and (report / "report.md").exists()
    assert json.loads(manifest.read_text())["image"].startswith("127.0.0.1")


def test_reproduce_reruns_a_run_in_its_image_with_equal_metrics(workspace, env, launched):
    result = study(workspace, env, "reproduce", "slurm", "base_s0", f"--project={PROJECT}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "identical" in result.stdout
