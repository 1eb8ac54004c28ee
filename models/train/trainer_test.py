"""Tests for the training loop: hook and phase order, duration, checkpoint cadence and
retention, in-process resume (also across an epoch boundary) and error handling."""

import dataclasses
from pathlib import Path

import pytest
import torch

from models.config import serialization
from models.config.configurable import Configurable
from models.train import checkpoint, distributed, pretrain, tiny_run
from models.train.callbacks.callback import Callback, Phase
from models.train.callbacks.checkpointer import CheckpointerCallback, CheckpointerConfig
from models.train.callbacks.config_saver import ConfigSaverCallback
from models.train.callbacks.defaults import default_callbacks
from models.train.callbacks.loss_plot import LossPlotCallback, LossPlotConfig
from models.train.callbacks.metrics_logger import MetricsLoggerCallback, read_metrics
from models.train.callbacks.progress import ProgressCallback, ProgressConfig
from models.train.callbacks.wandb_logger import WandbCallback, WandbConfig
from models.train.run_dir import RunDirConfig
from models.train.trainer import Duration, TrainerConfig


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run.write_tiny_dataset(tmp_path_factory.mktemp("data"))


class _Recorder(Callback):
    def __init__(self, name: str, phase: Phase, log: list) -> None:
        self.name, self.phase, self.log = name, phase, log

    def open_run(self) -> None:
        self.log.append((self.name, "open_run"))

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


@dataclasses.dataclass(kw_only=True)
class _RecorderConfig(Configurable[Callback]):
    """A callback config as a run's config holds one (`TrainerConfig.callbacks`)."""

    name: str
    enabled: bool = True

    def build(self) -> Callback:
        return _Recorder(self.name, Phase.OBSERVE, CONFIGURED_LOG)


CONFIGURED_LOG: list = []


def _config(data_dir: Path, root: Path, name: str, steps: int, **kwargs):
    return tiny_run.tiny_config(data_dir, root, name, steps, drop_path=0.1, **kwargs)


def test_hooks_run_in_order_and_by_phase(data_dir: Path, tmp_path: Path) -> None:
    log: list = []
    config = _config(data_dir, tmp_path, "hooks", steps=2, checkpoint_interval=2)
    # Registered late-phase first: the phase decides, not the registration order.
    callbacks = [_Recorder("observe", Phase.OBSERVE, log), _Recorder("measure", Phase.MEASURE, log)]
    pretrain.train(config, callbacks=callbacks)
    assert log == [
        ("measure", "open_run"),
        ("observe", "open_run"),
        ("measure", "pre_train"),
        ("observe", "pre_train"),
        ("measure", "pre_step", 1),
        ("observe", "pre_step", 1),
        ("measure", "post_step", 1, True),
        ("observe", "post_step", 1, True),
        ("measure", "pre_step", 2),
        ("observe", "pre_step", 2),
        ("measure", "post_step", 2, True),
        ("observe", "post_step", 2, True),
        # the checkpointer (PERSIST) runs after both in post_step and announces its save
        ("measure", "on_checkpoint", 2, "step_2"),
        ("observe", "on_checkpoint", 2, "step_2"),
        ("measure", "post_train"),
        ("observe", "post_train"),
    ]


def test_the_standard_callbacks_run_records_loggers_observers_then_the_checkpointer(
    data_dir: Path, tmp_path: Path
) -> None:
    config = _config(data_dir, tmp_path, "order", steps=1)
    config.trainer.callbacks["wandb"] = WandbConfig(mode="disabled")  # built, never started
    extra = _Recorder("extra", Phase.OBSERVE, [])
    env = distributed.DistributedEnv()
    trainer = pretrain.build_trainer(config, env, torch.device("cpu"), callbacks=[extra])
    assert [type(callback) for callback in trainer.callbacks] == [
        ConfigSaverCallback,
        MetricsLoggerCallback,
        ProgressCallback,
        WandbCallback,
        LossPlotCallback,
        _Recorder,  # a callback passed to build() runs after the configured ones of its phase
        CheckpointerCallback,
    ]


class _MetricsOnDiskAtCheckpoint(Callback):
    """Reads metrics.jsonl whenever a checkpoint was written."""

    def __init__(self) -> None:
        self.logged_at_checkpoint: dict[int, list[int]] = {}

    def on_checkpoint(self, step: int, path: Path) -> None:
        records = read_metrics(self.trainer.run_dir.metrics_path)
        self.logged_at_checkpoint[step] = [int(r["step"]) for r in records]


def test_a_checkpoint_is_written_only_after_its_step_is_in_metrics_jsonl(
    data_dir: Path, tmp_path: Path
) -> None:
    # A resume continues after the checkpoint: a step logged later would never be logged.
    probe = _MetricsOnDiskAtCheckpoint()
    config = _config(data_dir, tmp_path, "logged", steps=4, checkpoint_interval=2)
    pretrain.train(config, callbacks=[probe])
    assert probe.logged_at_checkpoint == {2: [1, 2], 4: [1, 2, 3, 4]}


class _StepSeen(Callback):
    """Records `trainer.step` where the identity check and the records run."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def open_run(self) -> None:
        self.seen.append(("open_run", self.trainer.step))

    def pre_train(self) -> None:
        self.seen.append(("pre_train", self.trainer.step))


def test_resume_comes_after_open_run_and_before_pre_train(data_dir: Path, tmp_path: Path) -> None:
    config = _config(data_dir, tmp_path, "phases", steps=3, checkpoint_interval=3)
    pretrain.train(config)
    config.trainer.max_duration = Duration.steps(4)
    probe = _StepSeen()
    resumed = pretrain.train(config, callbacks=[probe])
    assert resumed.resumed_from is not None and resumed.resumed_from.name == "step_3"
    assert probe.seen == [("open_run", 0), ("pre_train", 3)]


def test_a_callback_that_still_sets_a_priority_is_refused(data_dir: Path, tmp_path: Path) -> None:
    class _Old(Callback):
        priority = 100

    config = _config(data_dir, tmp_path, "old", steps=1)
    with pytest.raises(TypeError, match="_Old sets `priority`.*set `phase`"):
        pretrain.train(config, callbacks=[_Old()])


def test_a_duration_in_epochs_counts_batches_of_the_loader(data_dir: Path, tmp_path: Path) -> None:
    config = _config(data_dir, tmp_path, "epochs", steps=1)
    config.trainer.max_duration = Duration.epochs(2)
    trainer = pretrain.train(config)
    assert trainer.steps_per_epoch == 4  # 16 samples / global batch 4
    assert trainer.step == trainer.max_steps == 8
    assert [r["epoch"] for r in read_metrics(trainer.run_dir.metrics_path)][3::4] == [1.0, 2.0]


def test_checkpoints_keep_the_last_k_and_the_permanent_ones(data_dir: Path, tmp_path: Path) -> None:
    config = _config(data_dir, tmp_path, "keep", steps=10)
    config.trainer.callbacks["checkpointer"] = CheckpointerConfig(
        interval=2, keep_last=2, permanent_interval=4
    )
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
        pretrain.train(config, callbacks=[_Recorder("rec", Phase.OBSERVE, log), _Boom()])
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
        callbacks={
            "on": _RecorderConfig(name="on"),
            "off": _RecorderConfig(name="off", enabled=False),
        },
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


def test_a_trainer_config_round_trips_through_the_config_engine(tmp_path: Path) -> None:
    # config.yaml is written and read back by models/config/serialization.py.
    config = tiny_run.tiny_config(Path("."), tmp_path, "x", 1).trainer
    config.callbacks["loss_plot"] = LossPlotConfig(enabled=False)
    data = serialization.to_dict(config)
    assert list(data["callbacks"]) == list(config.callbacks)
    assert serialization.from_dict(data) == config


def test_a_trainer_config_written_before_callbacks_moved_still_loads() -> None:
    # A run folder's config.yaml as earlier code wrote it: callbacks as their own fields.
    run = RunDirConfig(project="p", name="r", root="/runs")
    old = {
        "_class_": "models.train.trainer.TrainerConfig",
        "run": serialization.to_dict(run),
        "max_duration": serialization.to_dict(Duration.steps(9)),
        "seed": 3,
        "log_interval": 1,
        "deterministic": False,
        "checkpointer": {
            "_class_": "models.train.callbacks.checkpointer.CheckpointerConfig",
            "interval": 5,
            "keep_last": 1,
            "permanent_interval": None,
            "save_final": True,
            "resume": False,
        },
        "progress": serialization.to_dict(ProgressConfig(enabled=False)),
        "wandb": serialization.to_dict(WandbConfig(mode="offline")),
        "save_config": True,
        "plot_loss": False,
        "callbacks": {"probe": serialization.to_dict(_RecorderConfig(name="probe"))},
    }
    loaded = serialization.from_dict(old)
    assert loaded == TrainerConfig(
        run=run,
        max_duration=Duration.steps(9),
        seed=3,
        resume=False,
        callbacks={
            **default_callbacks(),
            "checkpointer": CheckpointerConfig(interval=5, permanent_interval=None),
            "progress": ProgressConfig(enabled=False),
            "wandb": WandbConfig(mode="offline"),
            "loss_plot": LossPlotConfig(enabled=False),
            "probe": _RecorderConfig(name="probe"),
        },
    )
