"""Tests for W&B logging: mode selection and an offline run inside the run folder."""

import types
from pathlib import Path

import pytest

from models.train.callbacks import wandb_logger
from models.train.run_dir import RunDirectory


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, "offline"),
        ({"WANDB_API_KEY": "k"}, "online"),
        ({"WANDB_API_KEY": "k", "WANDB_MODE": "offline"}, "offline"),
        ({"WANDB_MODE": "disabled"}, "disabled"),
    ],
)
def test_auto_mode_is_offline_unless_an_api_key_is_set(environ: dict, expected: str) -> None:
    assert wandb_logger.resolve_mode("auto", environ) == expected


def test_an_explicit_mode_wins_over_the_environment() -> None:
    assert wandb_logger.resolve_mode("offline", {"WANDB_API_KEY": "k"}) == "offline"


def test_an_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="WandbConfig.mode"):
        wandb_logger.WandbConfig(mode="cloud")


def _run(tmp_path: Path, steps: range) -> wandb_logger.WandbCallback:
    callback = wandb_logger.WandbCallback(
        wandb_logger.WandbConfig(mode="offline"), "proj", "run-a", {"lr": 0.1}
    )
    callback.attach(
        types.SimpleNamespace(
            is_main=True, run_dir=RunDirectory(tmp_path).create(), is_log_step=lambda s: True
        )
    )
    callback.pre_train()
    run_id = callback.run.id
    for step in steps:
        callback.post_step(step, {"loss": 1.0 / step, "step": float(step)})
    callback.post_train()
    return run_id


def test_an_offline_run_lives_in_the_run_folder_and_resumes_the_same_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    first = _run(tmp_path, range(1, 3))
    second = _run(tmp_path, range(3, 5))
    assert first == second == (tmp_path / "wandb" / "run_id").read_text().strip()
    offline_runs = list((tmp_path / "wandb").glob(f"offline-run-*-{first}"))
    assert offline_runs and all((run / f"run-{first}.wandb").exists() for run in offline_runs)
