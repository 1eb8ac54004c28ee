"""Tests for the checkpointer: its config, its cadence, retention and the final checkpoint
(resuming from checkpoints is the trainer's: models/train/resume_test.py)."""

import types
from pathlib import Path

import pytest
import torch

from models.train import checkpoint
from models.train.callbacks import checkpointer, metrics_logger, wandb_logger
from models.train.run_dir import RunDirectory


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"interval": 0}, "interval"),
        ({"keep_last": 0}, "keep_last"),
        ({"permanent_interval": 0}, "permanent_interval"),
    ],
)
def test_invalid_cadence_is_rejected_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"CheckpointerConfig.{field}"):
        checkpointer.CheckpointerConfig(**kwargs)


def test_checkpoints_are_due_on_either_interval() -> None:
    callback = checkpointer.CheckpointerCallback(
        checkpointer.CheckpointerConfig(interval=3, permanent_interval=5)
    )
    assert [step for step in range(1, 16) if callback._due(step)] == [3, 5, 6, 9, 10, 12, 15]


def test_the_checkpointer_runs_in_a_later_phase_than_every_logger() -> None:
    # A step's metrics must be on disk before a checkpoint that resumes past it exists
    # (end to end: trainer_test's test_a_checkpoint_is_written_only_after_its_step_...).
    assert checkpointer.CheckpointerCallback.phase > max(
        metrics_logger.MetricsLoggerCallback.phase, wandb_logger.WandbCallback.phase
    )


class _Trainer:
    """What the checkpointer uses of a trainer: its state is one step counter."""

    def __init__(self, run: Path, step: int = 0, resumed_from: Path | None = None) -> None:
        self.run_dir = RunDirectory(run).create()
        self.is_main = True
        self.env = types.SimpleNamespace(world_size=1)
        self.step = step
        self.resumed_from = resumed_from
        self.announced: list[int] = []

    def checkpoint_parts(self) -> dict:
        return {"trainer": {"step": self.step, "weights": torch.full((2,), float(self.step))}}

    def notify_checkpoint(self, step: int, path: Path) -> None:
        self.announced.append(step)


def _started(trainer: _Trainer, **config) -> checkpointer.CheckpointerCallback:
    callback = checkpointer.CheckpointerConfig(**config).build()
    callback.attach(trainer)
    callback.pre_train()
    return callback


def test_checkpoints_are_written_on_due_steps_pruned_and_announced(tmp_path: Path) -> None:
    trainer = _Trainer(tmp_path)
    callback = _started(trainer, interval=2, keep_last=1, permanent_interval=4)
    for step in range(1, 7):
        trainer.step = step
        callback.post_step(step, {})
    assert [s for s, _ in checkpoint.list_complete(tmp_path / "checkpoints")] == [4, 6]
    assert trainer.announced == [2, 4, 6]
    assert checkpoint.load(tmp_path / "checkpoints" / "step_6")["trainer"]["step"] == 6


def test_the_final_checkpoint_is_skipped_when_the_resumed_one_holds_the_last_step(
    tmp_path: Path,
) -> None:
    resumed = _Trainer(tmp_path, step=5, resumed_from=tmp_path / "checkpoints" / "step_5")
    _started(resumed, interval=2).post_train()
    assert checkpoint.list_complete(tmp_path / "checkpoints") == []
    fresh = _Trainer(tmp_path, step=5)
    _started(fresh, interval=2).post_train()
    assert [s for s, _ in checkpoint.list_complete(tmp_path / "checkpoints")] == [5]
