"""launch_runs, in process: a group of runs is checked whole, gated once over the union of
its experiments' launch tests, published once, then submitted; nothing is lost on failure.

The gate's `bazel test`, the image and the scheduler are fakes that log each step, so the
tests see the order of the steps; the checks on names, the tree and the push are real.
"""

import dataclasses
import json
from pathlib import Path

import pytest

from launcher import launch, testing
from launcher.backends.backend import Backend, JobSpec, JobState, JobStatus
from launcher.registry.client import ImageReference
from launcher.settings import LaunchSettings

PROJECT = "2026_01_01_launch_runs_unit"
DIGEST = "sha256:" + "ef" * 32


class _Scheduler(Backend):
    """Logs what it is asked; the submission of the run named `refuse` fails."""

    def __init__(self, steps: list[str], refuse: str = "") -> None:
        self.steps = steps
        self.refuse = refuse
        self.jobs: list[JobSpec] = []

    def preflight(self, job_partitions: tuple[str, ...]) -> list[str]:
        self.steps.append("preflight")
        return []

    def submit(self, job: JobSpec) -> str:
        if job.name == self.refuse:
            raise RuntimeError(f"sbatch: error: {job.name} rejected")
        self.steps.append(f"submit {job.name}")
        self.jobs.append(job)
        return f"{len(self.jobs)}"

    def submit_array(self, jobs, name):
        self.steps.append(f"array {name}")
        return super().submit_array(jobs, name)

    def status(self, job_id: str) -> JobStatus:
        return JobStatus(JobState.PENDING)

    def logs(self, job_id: str) -> str:
        return ""

    def cancel(self, job_id: str) -> None:
        pass

    def follow_hint(self, job_id: str) -> str:
        return f"follow {job_id}"


@dataclasses.dataclass
class _World:
    workspace: Path
    steps: list[str]
    scheduler: _Scheduler


@pytest.fixture
def world(tmp_path, monkeypatch):
    work = testing.pushed_launch_workspace(tmp_path)
    steps: list[str] = []
    scheduler = _Scheduler(steps)

    def tests(workspace, labels, bazel=None):
        steps.append("bazel test " + " ".join(labels))
        return list(labels)

    def publish(workspace, commit, flavor, settings, registry):
        steps.append("publish")
        image = dataclasses.make_dataclass("Image", ["commit"])(commit)
        reference = ImageReference("127.0.0.1:5000", "terra-lab", DIGEST)
        pushed = dataclasses.make_dataclass(
            "Pushed", ["reference", "bytes_uploaded", "blobs_skipped"]
        )(reference, 1000, 3)
        return image, pushed

    monkeypatch.setattr(launch, "ensure_services", lambda cluster: steps.append("services"))
    monkeypatch.setattr(launch, "make_backend", lambda cluster: scheduler)
    monkeypatch.setattr(launch.gate, "run_group_launch_tests", tests)
    monkeypatch.setattr(launch.publish, "publish_image", publish)
    return _World(work, steps, scheduler)


def _run(experiment: str, seed: int, name: str = "") -> launch.RunRequest:
    return launch.RunRequest(
        experiment=experiment,
        label=f"//experiments:{experiment}",
        run_name=name or f"{experiment}_s{seed}",
        overrides=[f"--seed={seed}", f"--trainer.callbacks.wandb.project={PROJECT}"],
        config={"seed": seed},
    )


STUDY = [_run("nano", 0), _run("nano", 1), _run("nano_wide", 0), _run("nano_wide", 1)]


def test_a_group_is_gated_once_published_once_then_submitted_as_one_array(world):
    result = launch.launch_runs(
        STUDY, "local", PROJECT, LaunchSettings(), world.workspace, array_name="nano_study"
    )
    assert world.steps == [
        "services",
        "preflight",
        "bazel test //experiments:nano //experiments:nano_wide",  # each experiment once
        "publish",
        "array nano_study",
        *(f"submit {run.run_name}" for run in STUDY),
    ]
    assert [run.job_id for run in result.runs] == ["1", "2", "3", "4"]
    assert [run.run_name for run in result.runs] == [run.run_name for run in STUDY]
    assert result.image == f"127.0.0.1:5000/terra-lab@{DIGEST}"
    assert result.commit == testing.git(world.workspace, "rev-parse", "HEAD")
    for run, job, launched in zip(STUDY, world.scheduler.jobs, result.runs, strict=True):
        assert job.args == ("nano" if "wide" not in run.run_name else "nano_wide",
                            run.run_name, "local", *run.overrides)  # fmt: skip
        assert launched.run_dir == world.workspace / "runs" / PROJECT / run.run_name
        assert launched.run_dir.is_dir() and launched.follow == f"follow {launched.job_id}"
        assert json.loads((job.job_dir / "config.json").read_text()) == dict(run.config)
        assert job.env["TERRA_LAB_COMMIT"] == result.commit


def test_one_bad_run_refuses_the_whole_group_before_anything_is_pushed(world):
    runs = [*STUDY, _run("nano", 2, name="base_s2"), _run("nano", 0)]
    with pytest.raises(launch.LaunchRefused) as refused:
        launch.launch_runs(runs, "local", PROJECT, LaunchSettings(), world.workspace, None, "st")
    reasons = refused.value.reasons
    assert len(reasons) == 2, reasons
    assert "run name 'base_s2' must contain the experiment name 'nano'" in reasons[0]
    assert "run name 'nano_s0' is given twice" in reasons[1]
    assert world.steps == []  # no service, test, image or job


def test_a_problem_shared_by_every_run_is_reported_once(world):
    (world.workspace / "experiments" / "nano.py").write_text("print('edited')\n")
    with pytest.raises(launch.LaunchRefused) as refused:
        launch.launch_runs(STUDY, "local", "smoke", LaunchSettings(), world.workspace)
    reasons = refused.value.reasons
    assert len(reasons) == 2, reasons
    assert "YYYY_MM_DD_description" in reasons[0] and "working tree is dirty" in reasons[1]
    assert world.steps == []


def test_a_failing_tests_run_refuses_before_the_image_is_published(world, monkeypatch):
    def failing(workspace, labels, bazel=None):
        raise launch.LaunchRefused(["the launch tests of 2 experiments failed"])

    monkeypatch.setattr(launch.gate, "run_group_launch_tests", failing)
    with pytest.raises(launch.LaunchRefused, match="launch tests of 2 experiments failed"):
        launch.launch_runs(STUDY, "local", PROJECT, LaunchSettings(), world.workspace)
    assert "publish" not in world.steps and not world.scheduler.jobs


def test_a_submission_failing_after_two_jobs_names_the_runs_submitted_and_not(world):
    world.scheduler.refuse = "nano_wide_s0"
    with pytest.raises(launch.LaunchFailed) as failed:
        launch.launch_runs(STUDY, "local", PROJECT, LaunchSettings(), world.workspace)
    message = str(failed.value)
    assert "failed after 2 of 4 jobs: sbatch: error: nano_wide_s0 rejected" in message
    assert "submitted, and running: nano_s0 (job 1), nano_s1 (job 2)" in message
    assert "not submitted: nano_wide_s0, nano_wide_s1" in message
    assert failed.value.submitted == {"nano_s0": "1", "nano_s1": "2"}


def test_a_first_failing_submission_says_no_job_was_submitted(world):
    world.scheduler.refuse = "nano_s0"
    with pytest.raises(launch.LaunchFailed) as failed:
        launch.launch_runs(STUDY, "local", PROJECT, LaunchSettings(), world.workspace)
    assert str(failed.value) == (
        "submitting to local failed: sbatch: error: nano_s0 rejected; the image "
        f"127.0.0.1:5000/terra-lab@{DIGEST} is pushed, no job was submitted"
    )
    assert failed.value.submitted == {}


def test_launch_experiment_is_the_one_run_case_without_an_array(world, capsys):
    result = launch.launch_experiment(
        "nano", "//experiments:nano", "nano_one", "local", ["--seed=3"], {"a": 1}, PROJECT,
        LaunchSettings(), world.workspace,
    )  # fmt: skip
    assert world.steps == [
        "services", "preflight", "bazel test //experiments:nano", "publish", "submit nano_one",
    ]  # fmt: skip
    assert result.job_id == "1" and result.run_name == "nano_one"
    printed = capsys.readouterr().err
    assert f"launched nano at {result.commit[:12]} on local\n  job id    1\n" in printed
    assert f"  W&B       project {PROJECT}, run nano_one\n" in printed


def test_an_empty_group_is_a_programming_error():
    with pytest.raises(ValueError, match="at least one run"):
        launch.launch_runs([], "local", PROJECT, LaunchSettings())
