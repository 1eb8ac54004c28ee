"""Studies: the runs a declaration plans, the identical-hyperparameter refusal, and `launch`
submitting only what is missing or failed (the launcher's API replaced by a recorder; the
real launch path is the manual e2e tests')."""

from __future__ import annotations

import dataclasses
import io
import json
import types
from pathlib import Path
from typing import Any

import pytest

from experiments import base, base_encoder_per_mod_proj
from experiments.framework import study_cli, study_manifest
from experiments.framework.study import (
    Study,
    StudyError,
    grid_label,
    plan_runs,
    shared_overrides,
)
from launcher.settings import LaunchSettings

COMMIT = "a" * 40
IMAGE = "127.0.0.1:5000/terra-lab@sha256:" + "b" * 64


def make_study(**changes: Any) -> Study:
    fields = dict(
        name="tiny_study",
        hypothesis="per-modality projections help: lower loss, better probes",
        baseline=base,
        variants=(base_encoder_per_mod_proj,),
        seeds=(0, 1),
        project="tiny_study",
    )
    fields.update(changes)
    return Study(**fields)


def variant_with_other_lr() -> types.ModuleType:
    """A variant that declares CHANGES = ("model",) but also changes the learning rate."""
    module = types.ModuleType("experiments.sneaky_lr")
    module.baseline = base
    module.CHANGES = ("model",)

    def build_train_module_config(common):
        config = base.build_train_module_config(common)
        optimizer = dataclasses.replace(config.optimizer, lr=3e-4)
        return dataclasses.replace(config, optimizer=optimizer)

    module.build_train_module_config = build_train_module_config
    return module


# -- the plan --------------------------------------------------------------------------------


def test_every_experiment_runs_every_seed_at_every_grid_point() -> None:
    study = make_study(grid={"train_module.optimizer.lr": (1e-4, 2e-4)})
    runs = plan_runs(study, "local", "2026_12_03_tiny_study")
    assert len(runs) == 2 * 2 * 2
    names = [run.name for run in runs]
    assert "base_s0_lr0.0001" in names and "base_encoder_per_mod_proj_s1_lr0.0002" in names
    run = runs[-1]
    assert "--train_module.optimizer.lr=0.0002" in run.overrides
    assert "--seed=1" in run.overrides
    assert "--trainer.callbacks.wandb.group=tiny_study" in run.overrides
    assert "--trainer.callbacks.wandb.job_type=base_encoder_per_mod_proj" in run.overrides
    assert f"--trainer.callbacks.wandb.notes={study.hypothesis}" in run.overrides


def test_a_later_shared_override_of_the_same_key_replaces_the_earlier() -> None:
    study = make_study(
        launch=LaunchSettings(num_gpus=8),
        cluster_overrides={"local": ("--launch.num_gpus=1", "--trainer.max_steps=5")},
    )
    assert shared_overrides(study, "local", ["--trainer.max_steps=7"]) == [
        "--launch.num_gpus=1",
        "--trainer.max_steps=7",
    ]
    assert shared_overrides(study, "slurm") == ["--launch.num_gpus=8"]


def test_grid_labels_fit_in_run_names() -> None:
    assert grid_label({"train_module.optimizer.lr": 2e-4, "x.weight_decay": 0.02}) == (
        "lr0.0002_weight_decay0.02"
    )
    assert grid_label({}) == ""


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"name": "Bad-Name"}, "lowercase"),
        ({"hypothesis": "  "}, "hypothesis is empty"),
        ({"variants": ()}, "variants is empty"),
        ({"seeds": (0, 0)}, "seeds must be distinct"),
        ({"grid": {"model.encoder.width": (64, 128)}}, "the model is a variant's change"),
        ({"variants": (base,)}, "appears twice"),
    ],
)
def test_a_wrong_declaration_is_refused_naming_the_field(changes, fragment) -> None:
    with pytest.raises(StudyError, match=fragment):
        make_study(**changes)


# -- identical hyperparameters ----------------------------------------------------------------


def run_cli(study: Study, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = study_cli.run(study, list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def run_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "runs"
    monkeypatch.setenv("TERRA_RUN_ROOT", str(root))
    return root


def test_dry_run_lists_runs_diffs_and_passes_identical_hyperparameters(run_root: Path) -> None:
    status, out, err = run_cli(make_study(), "dry_run", "local", "--trainer.max_steps=10")
    assert status == 0, err
    assert "4 runs" in out
    assert "base_encoder_per_mod_proj_s1 vs base_s1 (may differ in: model)" in out
    assert "model.encoder._class_" in out
    assert "trainer.seed: 0 -> 1" in out
    assert "FLOPs over 4 runs" in out
    assert "GB per GPU (ddp, microbatch" in out and "on H100-SXM" in out
    assert "hyperparameters: identical across the study" in out


class RecordingLauncher:
    """launcher.api as the study sees it, recording what would be submitted."""

    LaunchRefused = type("LaunchRefused", (Exception,), {})
    LaunchFailed = type("LaunchFailed", (Exception,), {})

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.submitted: list[list[Any]] = []
        self.states: dict[str, str] = {}
        self.counter = 0
        self.commit = COMMIT

    def workspace_root(self) -> Path:
        return self.workspace

    def resolve_commit(self, workspace: Path) -> str:
        return self.commit

    @staticmethod
    def RunRequest(**fields: Any) -> types.SimpleNamespace:  # noqa: N802 - the API's class
        return types.SimpleNamespace(**fields)

    def launch_runs(self, requests, cluster, wandb_project, launch, workspace, commit, array_name):
        self.submitted.append(list(requests))
        results = []
        for request in requests:
            self.counter += 1
            job_id = f"job{self.counter}"
            self.states[job_id] = "pending"
            results.append(
                types.SimpleNamespace(
                    run_name=request.run_name,
                    job_id=job_id,
                    run_dir=Path(f"/runs/{wandb_project}/{request.run_name}"),
                )
            )
        return types.SimpleNamespace(commit=commit, image=IMAGE, runs=results)

    def job_states(self, cluster: str, job_ids: list[str]) -> dict[str, Any]:
        return {job: types.SimpleNamespace(state=self.states[job]) for job in job_ids}


@pytest.fixture
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RecordingLauncher:
    fake = RecordingLauncher(tmp_path / "workspace")
    monkeypatch.setattr(study_cli, "launcher", fake)
    return fake


def test_a_variant_that_changes_a_hyperparameter_outside_changes_is_refused_before_submitting(
    run_root: Path, recorder: RecordingLauncher
) -> None:
    study = make_study(variants=(variant_with_other_lr(),))
    for subcommand in ("dry_run", "launch"):
        status, _, err = run_cli(study, subcommand, "local")
        assert status == 2
        assert "variant sneaky_lr" in err and "train_module.optimizer.lr" in err
        assert "Nothing was built, pushed or submitted" in err
        assert len(err.strip().splitlines()) == 1
    assert recorder.submitted == []


def test_a_launch_time_override_only_one_variant_gets_is_refused(
    run_root: Path, recorder: RecordingLauncher, monkeypatch: pytest.MonkeyPatch
) -> None:
    planned = study_cli.plan_runs

    def one_variant_gets_more(study, cluster, project, cli_overrides=()):
        runs = planned(study, cluster, project, cli_overrides)
        return [
            dataclasses.replace(run, overrides=(*run.overrides, "--trainer.log_interval=5"))
            if run.experiment == "base_encoder_per_mod_proj" and run.seed == 1
            else run
            for run in runs
        ]

    monkeypatch.setattr(study_cli, "plan_runs", one_variant_gets_more)
    status, _, err = run_cli(make_study(), "launch", "local")
    assert status == 2
    assert "base_encoder_per_mod_proj (run base_encoder_per_mod_proj_s1)" in err
    assert "trainer.log_interval" in err
    assert recorder.submitted == []


# -- launch, relaunch, status -------------------------------------------------------------------


def manifest_of(run_root: Path) -> dict[str, Any]:
    [path] = run_root.glob("*/_studies/tiny_study/study.json")
    return json.loads(path.read_text())


def test_launch_twice_submits_nothing_the_second_time_and_a_failed_run_alone_is_resubmitted(
    run_root: Path, recorder: RecordingLauncher
) -> None:
    study = make_study()
    status, out, err = run_cli(study, "launch", "local", "--trainer.max_steps=10")
    assert status == 0, err
    assert [len(batch) for batch in recorder.submitted] == [4]
    manifest = manifest_of(run_root)
    assert manifest["commit"] == COMMIT and manifest["image"] == IMAGE
    assert sorted(run["name"] for run in manifest["runs"]) == [
        "base_encoder_per_mod_proj_s0",
        "base_encoder_per_mod_proj_s1",
        "base_s0",
        "base_s1",
    ]

    status, out, _ = run_cli(study, "launch", "local", "--trainer.max_steps=10")
    assert status == 0
    assert "nothing to launch" in out
    assert len(recorder.submitted) == 1

    by_name = {run["name"]: run for run in manifest["runs"]}
    for run in manifest["runs"]:
        recorder.states[run["job_id"]] = "completed"
    recorder.states[by_name["base_s1"]["job_id"]] = "failed"
    status, _, err = run_cli(study, "launch", "local", "--trainer.max_steps=10")
    assert status == 0, err
    [resubmitted] = recorder.submitted[1]
    assert resubmitted.run_name == "base_s1"
    assert resubmitted.overrides[0] == "--resume"  # it continues its own run folder
    after = {run["name"]: run for run in manifest_of(run_root)["runs"]}
    assert after["base_s1"]["previous_jobs"] == [by_name["base_s1"]["job_id"]]
    assert after["base_s0"]["job_id"] == by_name["base_s0"]["job_id"]


def test_status_prints_one_line_per_run_with_state_step_loss_and_eta(
    run_root: Path, recorder: RecordingLauncher, tmp_path: Path
) -> None:
    study = make_study()
    assert run_cli(study, "launch", "local", "--trainer.max_steps=10")[0] == 0
    manifest = manifest_of(run_root)
    first = manifest["runs"][0]
    run_dir = tmp_path / "a_run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text(
        "".join(
            json.dumps({"step": step, "loss": 2.0 - step / 10, "step_time_s": 3.0}) + "\n"
            for step in range(1, 5)
        )
    )
    first["run_dir"] = str(run_dir)
    path = study_manifest.manifest_path(run_root, manifest["project"], "tiny_study")
    study_manifest.write(path, manifest)
    recorder.states[first["job_id"]] = "running"

    status, out, err = run_cli(study, "status", "local")
    assert status == 0, err
    line = next(line for line in out.splitlines() if line.strip().startswith(first["name"]))
    assert "running" in line and "4/10" in line and "1.6000" in line
    assert "0m18s" in line  # 6 steps left x 3 s
    assert "4 runs: 3 pending, 1 running" in out


def test_status_of_a_study_never_launched_says_how_to_launch(
    run_root: Path, recorder: RecordingLauncher
) -> None:
    status, _, err = run_cli(make_study(), "status", "local")
    assert status == 2
    assert "launch it first" in err


def test_the_plan_document_gets_the_runs_in_its_runs_section(tmp_path: Path) -> None:
    plan = tmp_path / "experiments" / "plans" / "tiny_study.plan.md"
    plan.parent.mkdir(parents=True)
    plan.write_text("# Plan\n\n## Runs\nto be filled\n\n## Notes\nkeep me\n")
    manifest = {
        "cluster": "local",
        "project": "2026_12_03_tiny_study",
        "commit": COMMIT,
        "image": IMAGE,
        "runs": [
            {"name": "base_s0", "variant": "base", "seed": 0, "job_id": "j1", "commit": COMMIT}
        ],
    }
    study = make_study()
    for _ in range(2):  # a second launch replaces the block, it does not add another
        study_cli.fill_plan(tmp_path, study, manifest, Path("/x/study.json"))
    text = plan.read_text()
    assert text.count("<!-- study runs of 2026_12_03_tiny_study:") == 1
    assert "| base_s0 | base | 0 | - | j1 | aaaaaaaaaaaa |" in text
    assert "to be filled" not in text
    assert text.endswith("## Notes\nkeep me\n")

    # A launch into another project adds its block after the first, which stays.
    other = dict(manifest, project="2026_12_04_tiny_study", cluster="slurm")
    other["runs"] = [dict(manifest["runs"][0], job_id="77_0")]
    study_cli.fill_plan(tmp_path, study, other, Path("/x/study.json"))
    text = plan.read_text()
    assert text.index("| j1 |") < text.index("| 77_0 |") < text.index("## Notes")
    assert text.endswith("## Notes\nkeep me\n")


def test_the_manifest_is_replaced_whole_never_half_written(tmp_path: Path) -> None:
    path = tmp_path / "p" / "_studies" / "s" / "study.json"
    study_manifest.write(path, {"format": 1, "runs": [], "launched": "1"})
    study_manifest.write(path, {"format": 1, "runs": [{"name": "a"}], "launched": "2"})
    assert study_manifest.read(path)["runs"] == [{"name": "a"}]
    assert [p.name for p in path.parent.iterdir()] == ["study.json"]
    path.write_text("{torn")
    with pytest.raises(study_manifest.ManifestError, match="move it aside"):
        study_manifest.read(path)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["lanch", "local"], "Did you mean launch"),
        (["dry_run"], "expected a subcommand and a cluster"),
        (["status", "local", "--trainer.max_steps=3"], "takes none"),
        (["reproduce", "local"], "name of one run"),
        (["dry_run", "nowhere"], "unknown cluster"),
        (["dry_run", "local", "--project=yesterday"], "YYYY_MM_DD"),
        (["launch", "local", "--seed=4"], "study's `seeds`"),
        (["launch", "local", "--trainer.callbacks.wandb.project=2026_01_01_x"], "--project="),
    ],
)
def test_a_wrong_command_line_is_one_line_and_exit_2(run_root: Path, argv, fragment) -> None:
    status, _, err = run_cli(make_study(), *argv)
    assert status == 2
    assert fragment in err
    assert len(err.strip().splitlines()) == 1


def test_runs_submitted_before_a_failure_are_recorded_so_a_relaunch_does_not_repeat_them(
    run_root: Path, recorder: RecordingLauncher, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails_after_one(requests, **_: Any):
        error = recorder.LaunchFailed("the scheduler went away after 1 of 4 jobs")
        error.submitted = {requests[0].run_name: "job-early"}
        raise error

    monkeypatch.setattr(recorder, "launch_runs", fails_after_one)
    status, _, err = run_cli(make_study(), "launch", "local", "--trainer.max_steps=10")
    assert status == 1
    assert "went away" in err
    [run] = manifest_of(run_root)["runs"]
    assert run["name"] == "base_s0" and run["job_id"] == "job-early"


def test_a_relaunch_at_other_code_submits_nothing_it_would_mix_but_passes_a_finished_study(
    run_root: Path, recorder: RecordingLauncher
) -> None:
    study = make_study()
    assert run_cli(study, "launch", "local", "--trainer.max_steps=10")[0] == 0
    recorder.commit = "c" * 40  # HEAD moved to other code (no git here: not provably the same)
    status, out, _ = run_cli(study, "launch", "local", "--trainer.max_steps=10")
    assert status == 0 and "nothing to launch" in out

    job = manifest_of(run_root)["runs"][0]["job_id"]
    recorder.states[job] = "failed"
    status, _, err = run_cli(study, "launch", "local", "--trainer.max_steps=10")
    assert status == 2
    assert "was launched at aaaaaaaaaaaa" in err and "--project=" in err
    assert len(recorder.submitted) == 1


def test_a_second_launch_while_one_runs_is_refused_and_submits_nothing(
    run_root: Path, recorder: RecordingLauncher
) -> None:
    project = make_study().dated_project()
    path = study_manifest.manifest_path(run_root, project, "tiny_study")
    with study_manifest.launch_lock(path):
        status, _, err = run_cli(make_study(), "launch", "local", "--trainer.max_steps=10")
    assert status == 2
    assert "another launch of this study" in err and "submits only what is missing" in err
    assert recorder.submitted == []
    assert run_cli(make_study(), "launch", "local", "--trainer.max_steps=10")[0] == 0


def test_status_reads_the_newest_launch_on_its_own_cluster(
    run_root: Path, recorder: RecordingLauncher
) -> None:
    study = make_study()
    assert run_cli(study, "launch", "local", "--trainer.max_steps=10")[0] == 0
    other = study_manifest.manifest_path(run_root, "2099_01_01_tiny_study", "tiny_study")
    study_manifest.write(
        other, {"format": 1, "cluster": "slurm", "launched": "2099", "runs": [], "study": "x"}
    )
    status, out, err = run_cli(study, "status", "local")
    assert status == 0, err
    assert study.dated_project() in out
