"""Tests for the training loop: hook order, duration, checkpoint cadence and retention,
in-process resume (also across an epoch boundary) and error handling."""

import dataclasses
from pathlib import Path

import pytest
import torch

from models.train import checkpoint, pretrain, tiny_run
from models.train.callbacks.callback import Callback
from models.train.callbacks.checkpointer import CheckpointerConfig
from models.train.callbacks.metrics_logger import read_metrics
from models.train.trainer import Duration


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run.write_tiny_dataset(tmp_path_factory.mktemp("data"))


class _Recorder(Callback):
    def __init__(self, name: str, priority: int, log: list) -> None:
        self.name, self.priority, self.log = name, priority, log

    def pre_train(self) -> None:
        self.log.append((self.name, "pre_train"))

    def pre_step(self, step: int) -> None:
        self.log.append((self.name, "pre_step", step))

    def post_step(self, step: int, metrics: dict) -> None:
        self.log.append((self.name, "post_step", step, "loss" in metrics))

    def on_checkpoint(self, step: int, path: Path) -> None:
        self.log.append((self.name, "on_checkpoint", step, path.name))

    def post_train(self) -> None:
        self.log.append((self.name, "post_train"))

    def on_error(self, error: BaseException) -> None:
        self.log.append((self.name, "on_error", type(error).__name__))


@dataclasses.dataclass
class _RecorderConfig:
    """A callback config as a run's config holds one (`TrainerConfig.callbacks`)."""

    name: str
    enabled: bool = True

    def build(self) -> Callback:
        return _Recorder(self.name, 0, CONFIGURED_LOG)


CONFIGURED_LOG: list = []


def _config(data_dir: Path, root: Path, name: str, steps: int, **kwargs):
    return tiny_run.tiny_config(data_dir, root, name, steps, drop_path=0.1, **kwargs)


def test_hooks_run_in_order_and_by_descending_priority(data_dir: Path, tmp_path: Path) -> None:
    log: list = []
    config = _config(data_dir, tmp_path, "hooks", steps=2, checkpoint_interval=2)
    callbacks = [_Recorder("low", -5, log), _Recorder("high", 5, log)]
    pretrain.train(config, callbacks=callbacks)
    assert log == [
        ("high", "pre_train"),
        ("low", "pre_train"),
        ("high", "pre_step", 1),
        ("low", "pre_step", 1),
        ("high", "post_step", 1, True),
        ("low", "post_step", 1, True),
        ("high", "pre_step", 2),
        ("low", "pre_step", 2),
        ("high", "post_step", 2, True),
        ("low", "post_step", 2, True),
        # the checkpointer runs last in post_step (priority -100) and announces its save
        ("high", "on_checkpoint", 2, "step_2"),
        ("low", "on_checkpoint", 2, "step_2"),
        ("high", "post_train"),
        ("low", "post_train"),
    ]


def test_a_duration_in_epochs_counts_batches_of_the_loader(data_dir: Path, tmp_path: Path) -> None:
    config = _config(data_dir, tmp_path, "epochs", steps=1)
    config.trainer.max_duration = Duration.epochs(2)
    trainer = pretrain.train(config)
    assert trainer.steps_per_epoch == 4  # 16 samples / global batch 4
    assert trainer.step == trainer.max_steps == 8
    assert [r["epoch"] for r in read_metrics(trainer.run_dir.metrics_path)][3::4] == [1.0, 2.0]


def test_checkpoints_keep_the_last_k_and_the_permanent_ones(data_dir: Path, tmp_path: Path) -> None:
    config = _config(data_dir, tmp_path, "keep", steps=10)
    config.trainer.checkpointer = CheckpointerConfig(interval=2, keep_last=2, permanent_interval=4)
    trainer = pretrain.train(config)
    kept = [step for step, _ in checkpoint.list_complete(trainer.run_dir.checkpoints_dir)]
    assert kept == [4, 6, 8, 10]


class _Crash(Exception):
    pass


class _CrashAfterCheckpoint(Callback):
    """Stops the run like a crash right after the checkpoint of step `at` is written."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_checkpoint(self, step: int, path: Path) -> None:
        if step == self.at:
            raise _Crash


@pytest.mark.parametrize("crash_at", [4, 6], ids=["at-epoch-end", "mid-epoch"])
def test_a_resumed_run_continues_exactly_like_a_straight_one(
    data_dir: Path, tmp_path: Path, crash_at: int
) -> None:
    straight = pretrain.train(_config(data_dir, tmp_path, "straight", steps=8))
    expected = read_metrics(straight.run_dir.metrics_path)

    config = _config(data_dir, tmp_path, "resumed", steps=8, checkpoint_interval=crash_at)
    with pytest.raises(_Crash):
        pretrain.train(config, callbacks=[_CrashAfterCheckpoint(crash_at)])
    # A leftover of a crashed checkpoint write must be ignored and cleaned up.
    leftover = tmp_path / "tiny" / "resumed" / "checkpoints" / ".tmp-step_99-1-dead"
    leftover.mkdir()
    (leftover / checkpoint.META_FILE).write_text("{}")
    resumed = pretrain.train(config)
    assert resumed.resumed_from is not None and resumed.resumed_from.name == f"step_{crash_at}"
    assert not leftover.exists()
    got = read_metrics(resumed.run_dir.metrics_path)
    assert [r["step"] for r in got] == list(range(1, 9))
    for want, have in zip(expected, got, strict=True):
        for key in ("loss", "grad_norm", "lr", "tokens_seen"):
            assert have[key] == want[key], (want["step"], key)


def test_an_error_in_a_step_reaches_on_error_and_skips_post_train(
    data_dir: Path, tmp_path: Path
) -> None:
    log: list = []

    class _Boom(Callback):
        def pre_step(self, step: int) -> None:
            if step == 2:
                raise KeyboardInterrupt

    config = _config(data_dir, tmp_path, "boom", steps=5)
    with pytest.raises(KeyboardInterrupt):
        pretrain.train(config, callbacks=[_Recorder("rec", 0, log), _Boom()])
    assert log[-1] == ("rec", "on_error", "KeyboardInterrupt")
    assert ("rec", "post_train") not in log
    run = tmp_path / "tiny" / "boom"
    assert not (run / "run.lock").exists()
    assert checkpoint.list_complete(run / "checkpoints") == []


def test_duration_and_trainer_config_validation() -> None:
    with pytest.raises(ValueError, match="Duration.unit"):
        Duration(3, "tokens")
    with pytest.raises(ValueError, match="Duration.value"):
        Duration.steps(0)
    config = tiny_run.tiny_config(Path("."), Path("."), "x", 1).trainer
    with pytest.raises(ValueError, match="TrainerConfig.log_interval"):
        dataclasses.replace(config, log_interval=0)


def test_callbacks_named_in_the_config_are_built_unless_disabled(
    data_dir: Path, tmp_path: Path
) -> None:
    config = _config(data_dir, tmp_path, "configured", steps=2)
    trainer_config = dataclasses.replace(
        config.trainer,
        callbacks={"on": _RecorderConfig("on"), "off": _RecorderConfig("off", enabled=False)},
    )
    CONFIGURED_LOG.clear()
    pretrain.train(dataclasses.replace(config, trainer=trainer_config))
    assert ("on", "post_step", 2, True) in CONFIGURED_LOG
    assert ("on", "post_train") in CONFIGURED_LOG
    assert not [entry for entry in CONFIGURED_LOG if entry[0] == "off"]


def test_a_configured_callback_without_build_is_refused(data_dir: Path, tmp_path: Path) -> None:
    config = _config(data_dir, tmp_path, "bad", steps=1)
    with pytest.raises(ValueError, match=r"callbacks\['eval'\] is a dict, which has no build"):
        dataclasses.replace(config.trainer, callbacks={"eval": {"interval": 5}})
