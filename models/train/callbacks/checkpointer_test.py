"""Tests for the checkpointer's config and its cadence decision (resume and retention are
tested end to end in models/train/trainer_test.py and resume_test.py)."""

import pytest

from models.train.callbacks import checkpointer, metrics_logger, wandb_logger


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


def test_the_checkpointer_runs_after_every_logger() -> None:
    # A step's metrics must be on disk before a checkpoint that resumes past it exists.
    assert checkpointer.CheckpointerCallback.priority < min(
        metrics_logger.MetricsLoggerCallback.priority, wandb_logger.WandbCallback.priority
    )
