"""Tests for the checkpointer: its config, its cadence, and resuming past checkpoints that
do not load (resume and retention are tested end to end in models/train/trainer_test.py and
resume_test.py)."""

import json
import logging
import os
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


def test_the_checkpointer_runs_after_every_logger() -> None:
    # A step's metrics must be on disk before a checkpoint that resumes past it exists.
    assert checkpointer.CheckpointerCallback.priority < min(
        metrics_logger.MetricsLoggerCallback.priority, wandb_logger.WandbCallback.priority
    )


class _Trainer:
    """What the checkpointer uses of a trainer: its state is one step counter."""

    def __init__(self, run: Path) -> None:
        self.run_dir = RunDirectory(run).create()
        self.is_main = True
        self.env = types.SimpleNamespace(world_size=1)
        self.step = 0
        self.resumed_from: Path | None = None

    def checkpoint_parts(self) -> dict:
        return {"trainer": {"step": self.step, "weights": torch.full((2,), float(self.step))}}

    def load_checkpoint_parts(self, parts: dict) -> None:
        self.step = parts["trainer"]["step"]

    def notify_checkpoint(self, step: int, path: Path) -> None:
        pass


def _resume(run: Path, **config) -> tuple[checkpointer.CheckpointerCallback, _Trainer]:
    callback = checkpointer.CheckpointerCallback(checkpointer.CheckpointerConfig(**config))
    trainer = _Trainer(run)
    callback.attach(trainer)
    callback.pre_train()
    return callback, trainer


def _write_checkpoints(run: Path, steps: list[int]) -> None:
    callback, trainer = _resume(run, keep_last=10)
    for step in steps:
        trainer.step = step
        callback.save(step)


def _damage(path: Path, how: str) -> None:
    if how == "truncated":
        data = (path / "trainer.pt").read_bytes()
        (path / "trainer.pt").write_bytes(data[:100])
    elif how == "garbage-meta":
        (path / checkpoint.META_FILE).write_text("{not json")
    elif how == "missing-part":
        (path / "trainer.pt").unlink()


@pytest.mark.parametrize("how", ["truncated", "garbage-meta", "missing-part"])
def test_resume_falls_back_past_checkpoints_that_do_not_load(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    _write_checkpoints(tmp_path, [3, 6, 9])
    _damage(tmp_path / "checkpoints" / "step_9", how)
    _damage(tmp_path / "checkpoints" / "step_6", "truncated")
    with caplog.at_level(logging.WARNING):
        callback, trainer = _resume(tmp_path)
    assert trainer.step == 3 and trainer.resumed_from == tmp_path / "checkpoints" / "step_3"
    assert callback.last_saved_step == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("cannot resume from" in w and "step_9" in w for w in warnings), warnings
    assert any("cannot resume from" in w and "step_6" in w for w in warnings), warnings
    assert any("resuming from" in w and "step_3" in w and "2 newer" in w for w in warnings)


def test_when_no_checkpoint_loads_resume_stops_naming_each_and_the_fix(tmp_path: Path) -> None:
    _write_checkpoints(tmp_path, [3, 6])
    _damage(tmp_path / "checkpoints" / "step_3", "garbage-meta")
    _damage(tmp_path / "checkpoints" / "step_6", "truncated")
    with pytest.raises(RuntimeError) as raised:
        _resume(tmp_path)
    message = str(raised.value)
    assert f"no checkpoint in {tmp_path / 'checkpoints'} loads" in message
    assert "step_6: trainer.pt has" in message and "step_3: meta.json does not read" in message
    assert "Move these step_<N> folders out" in message
    # Nothing was deleted: the decision is the user's.
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_3", "step_6"]


def test_a_planted_pickle_does_not_run_on_resume(tmp_path: Path) -> None:
    _write_checkpoints(tmp_path, [2, 4])
    newest = tmp_path / "checkpoints" / "step_4"
    marker = tmp_path / "code-ran"
    torch.save({"step": 4, "x": _Planted(marker)}, newest / "trainer.pt")
    meta = json.loads((newest / checkpoint.META_FILE).read_text())
    meta["sizes"]["trainer"] = (newest / "trainer.pt").stat().st_size  # a careful planter
    (newest / checkpoint.META_FILE).write_text(json.dumps(meta))
    _, trainer = _resume(tmp_path)
    assert not marker.exists()
    assert trainer.resumed_from == tmp_path / "checkpoints" / "step_2"


class _Planted:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_run_without_checkpoints_starts_from_step_zero(tmp_path: Path) -> None:
    _, trainer = _resume(tmp_path)
    assert trainer.step == 0 and trainer.resumed_from is None


def test_after_a_fallback_the_resaved_step_replaces_the_bad_one_and_pruning_spares_the_new(
    tmp_path: Path,
) -> None:
    _write_checkpoints(tmp_path, [3, 6, 9])
    _damage(tmp_path / "checkpoints" / "step_9", "truncated")
    checkpoint.delete(tmp_path / "checkpoints" / "step_6")
    callback, trainer = _resume(tmp_path, interval=3, keep_last=1, permanent_interval=None)
    assert trainer.step == 3
    trainer.step = 6
    callback.post_step(6, {})
    # The unreadable step_9 (newer) must not count as the newest kept: step_6 stays.
    assert [s for s, _ in checkpoint.list_finished(tmp_path / "checkpoints")] == [6, 9]
    trainer.step = 9
    callback.post_step(9, {})
    assert [s for s, _ in checkpoint.list_complete(tmp_path / "checkpoints")] == [9]
    assert checkpoint.load(tmp_path / "checkpoints" / "step_9")["trainer"]["step"] == 9
