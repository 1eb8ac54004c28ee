"""`launch` hands the launcher the experiment, its label, the run, the resolved config and
overrides that pin the W&B project; a refusal exits with the launcher's status."""

from __future__ import annotations

import importlib
import io
import types
from pathlib import Path

import pytest

from experiments.framework import cli, launching
from experiments.framework.experiment_config import Builders

BASE = importlib.import_module("experiments.base")


class FakeRefused(RuntimeError):
    exit_code = 2


class FakeFailed(RuntimeError):
    exit_code = 1


@pytest.fixture
def fake_launcher(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict]:
    calls: list[dict] = []
    monkeypatch.setenv("BUILD_WORKSPACE_DIRECTORY", str(tmp_path))
    monkeypatch.delenv("TERRA_RUN_ROOT", raising=False)

    def launch_experiment(**kwargs):
        calls.append(kwargs)
        if kwargs["run_name"].endswith("refused"):
            raise FakeRefused("launch refused; nothing was pushed or submitted:\n  - dirty tree")
        if kwargs["run_name"].endswith("broken"):
            raise FakeFailed("the image could not be pushed: registry down")
        return types.SimpleNamespace(
            job_id="42",
            cluster=kwargs["cluster"],
            run_name=kwargs["run_name"],
            wandb_project=kwargs["wandb_project"],
            follow="tail -f job.log",
            run_dir=Path("/runs") / kwargs["wandb_project"] / kwargs["run_name"],
        )

    # launcher.api is all that launching.py uses of the launcher.
    monkeypatch.setattr(launching.launcher, "launch_experiment", launch_experiment)
    monkeypatch.setattr(launching.launcher, "LaunchRefused", FakeRefused)
    monkeypatch.setattr(launching.launcher, "LaunchFailed", FakeFailed)
    monkeypatch.setattr(launching.launcher, "resolve_commit", lambda workspace: "f" * 40)
    return calls


def _launch(*overrides: str, run_name: str = "base_lr1e-4") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = ["launch", run_name, "local", *overrides]
    return (
        cli.run(Builders.from_module(BASE), argv, "base", out, err),
        out.getvalue(),
        err.getvalue(),
    )


def test_launch_hands_over_the_resolved_run(fake_launcher: list[dict]) -> None:
    status, out, _ = _launch(
        "--launch.num_gpus=8", "--trainer.callbacks.wandb.project=2026_11_25_x"
    )
    assert status == 0 and "job 42" in out
    (call,) = fake_launcher
    assert call["experiment"] == "base" and call["label"] == "//experiments:base"
    assert call["run_name"] == "base_lr1e-4" and call["cluster"] == "local"
    assert call["wandb_project"] == "2026_11_25_x"
    assert call["config"]["launch"]["num_gpus"] == 8 and call["launch"].num_gpus == 8
    assert call["overrides"] == [
        "--launch.num_gpus=8",
        "--trainer.callbacks.wandb.project=2026_11_25_x",
    ]


def test_the_default_dated_project_is_pinned_for_the_job(fake_launcher: list[dict]) -> None:
    status, _, _ = _launch()
    assert status == 0
    (call,) = fake_launcher
    pinned = f"--trainer.callbacks.wandb.project={call['wandb_project']}"
    assert call["overrides"] == [pinned]


def test_a_refused_launch_exits_with_the_launchers_status(fake_launcher: list[dict]) -> None:
    status, _, err = _launch(run_name="base_refused")
    assert status == 2 and "dirty tree" in err


def test_the_launcher_gets_the_commit_resolved_once(fake_launcher: list[dict]) -> None:
    assert _launch()[0] == 0
    assert fake_launcher[0]["commit"] == "f" * 40


def test_a_failed_launch_operation_exits_1_with_its_message(fake_launcher: list[dict]) -> None:
    status, _, err = _launch(run_name="base_broken")
    assert status == 1 and err.strip() == "error: the image could not be pushed: registry down"


def _existing_run(tmp_path: Path, project: str, run_name: str) -> Path:
    run_dir = tmp_path / "runs" / project / run_name
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text('{"step": 1}\n')
    return run_dir


def test_a_launch_into_an_existing_run_is_refused_before_the_launcher_runs(
    fake_launcher: list[dict], tmp_path: Path
) -> None:
    _existing_run(tmp_path, "2026_11_25_x", "base_lr1e-4")
    status, _, err = _launch("--trainer.callbacks.wandb.project=2026_11_25_x")
    assert status == 2 and "already exists" in err and "--resume" in err
    assert fake_launcher == []


def test_resume_travels_to_the_job(fake_launcher: list[dict], tmp_path: Path) -> None:
    _existing_run(tmp_path, "2026_11_25_x", "base_lr1e-4")
    status, _, err = _launch("--resume", "--trainer.callbacks.wandb.project=2026_11_25_x")
    assert status == 0, err
    assert fake_launcher[0]["overrides"][0] == "--resume"
