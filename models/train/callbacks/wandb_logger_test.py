"""Tests for W&B logging: mode selection, an offline run inside the run folder, and the
resumed values of replayed steps winning in W&B's history as they do in metrics.jsonl."""

import dataclasses
import json
import logging
import os
import socket
import types
from pathlib import Path

import pytest
import torch
from wandb.proto import wandb_internal_pb2

from models.train import pretrain, tiny_run
from models.train.callbacks import wandb_logger, wandb_reader
from models.train.callbacks.callback import Callback, Phase
from models.train.callbacks.loss_plot import LossPlotConfig
from models.train.callbacks.metrics_logger import read_metrics
from models.train.run_dir import RunDirConfig, RunDirectory
from models.train.trainer import TrainerConfig


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")


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


def test_an_unknown_mode_or_replay_policy_is_rejected() -> None:
    with pytest.raises(ValueError, match="WandbConfig.mode"):
        wandb_logger.WandbConfig(mode="cloud")
    with pytest.raises(ValueError, match="WandbConfig.replayed_steps"):
        wandb_logger.WandbConfig(replayed_steps="keep")


def _run_record(log: Path) -> wandb_internal_pb2.RunRecord:
    """The `run` record of one offline segment (its start time, branch point, ...)."""
    record = wandb_internal_pb2.Record()
    for payload in wandb_reader.read_payloads(log):
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == "run":
            break
    return record.run


def wandb_history(run_dir: Path) -> dict[int, dict]:
    """The history W&B's server builds from a run folder's offline segments, by step.

    Segments apply in start order. One that starts with a rewind (a branch point) first
    drops the steps after that point; otherwise W&B keeps the first value logged for a
    step and ignores a step at or below the last one it has (steps must increase).
    """
    segments = []
    for log in wandb_reader.offline_run_files(run_dir):
        # W&B's writer process may still be flushing a segment that finish() returned from.
        rows = wandb_reader.read_finished_run(log).history
        run = _run_record(log)
        branch = int(run.branch_point.value) if run.HasField("branch_point") else None
        segments.append((run.start_time.ToNanoseconds(), branch, rows))
    history: dict[int, dict] = {}
    for _, branch, rows in sorted(segments, key=lambda segment: segment[0]):
        if branch is not None:
            history = {step: row for step, row in history.items() if step <= branch}
        for row in rows:
            step = int(row["_step"])
            if not history or step > max(history):
                history[step] = row
    return history


def _attempt(
    run: Path,
    steps: range,
    value: float,
    config: wandb_logger.WandbConfig,
    crash: bool = False,
    run_config: object = None,
) -> wandb_logger.WandbCallback:
    """One attempt of a run: logs `value` at each step, with a checkpoint every 3 steps;
    `crash`: dies after the last step instead of finishing."""
    callback = config.build()
    callback.attach(
        types.SimpleNamespace(
            is_main=True,
            run_dir=RunDirectory(run).create(),
            is_log_step=lambda step: True,
            run_project="proj",
            run_name="run-a",
            run_config={"lr": 0.1} if run_config is None else run_config,
        )
    )
    callback.pre_train()
    for step in steps:
        callback.pre_step(step)
        callback.post_step(step, {"value": value, "step": float(step)})
        if step % 3 == 0:
            callback.on_checkpoint(step, run / "checkpoints" / f"step_{step}")
    if crash:
        callback.on_error(RuntimeError("killed"))
    else:
        callback.post_train()
    return callback


def _values(history: dict[int, dict]) -> dict[int, float]:
    return {step: row["train/value"] for step, row in history.items()}


@pytest.mark.parametrize("replayed_steps", wandb_logger.REPLAYED_STEPS)
def test_the_resumed_attempt_s_values_of_replayed_steps_win(
    tmp_path: Path, replayed_steps: str
) -> None:
    config = wandb_logger.WandbConfig(mode="offline", replayed_steps=replayed_steps)
    # Killed after step 5; its last checkpoint is step 3, so steps 4 and 5 are trained again.
    _attempt(tmp_path, range(1, 6), 1.0, config, crash=True)
    _attempt(tmp_path, range(4, 8), 2.0, config)
    assert _values(wandb_history(tmp_path)) == {
        1: 1.0,
        2: 1.0,
        3: 1.0,
        4: 2.0,
        5: 2.0,
        6: 2.0,
        7: 2.0,
    }
    run_ids = {log.name for log in wandb_reader.offline_run_files(tmp_path)}
    assert run_ids == {f"run-{(tmp_path / 'wandb' / 'run_id').read_text().strip()}.wandb"}


def test_hold_sends_a_step_only_once_a_checkpoint_covers_it(tmp_path: Path) -> None:
    config = wandb_logger.WandbConfig(mode="offline", replayed_steps="hold")
    _attempt(tmp_path, range(1, 6), 1.0, config, crash=True)
    assert sorted(wandb_history(tmp_path)) == [1, 2, 3]


def test_without_rewind_support_the_run_resumes_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import wandb

    config = wandb_logger.WandbConfig(mode="offline")
    _attempt(tmp_path, range(1, 6), 1.0, config, crash=True)
    real_init = wandb.init

    def init_without_rewind(**kwargs):
        if "resume_from" in kwargs:
            raise wandb.errors.CommError("rewind is not enabled for this entity")
        return real_init(**kwargs)

    monkeypatch.setattr(wandb, "init", init_without_rewind)
    with caplog.at_level(logging.WARNING):
        _attempt(tmp_path, range(4, 8), 2.0, config)
    assert any("could not rewind W&B run" in r.getMessage() for r in caplog.records)
    # The same W&B run continues; W&B keeps the killed attempt's values of steps 4 and 5.
    assert _values(wandb_history(tmp_path)) == {
        1: 1.0,
        2: 1.0,
        3: 1.0,
        4: 1.0,
        5: 1.0,
        6: 2.0,
        7: 2.0,
    }


# -- runs of a study: group, job type, notes and the provenance block ------------------------

HYPOTHESIS = "Per-modality projections (S2, S1: 2 bands) help: kNN +0.5, p < 0.05 (3 seeds)"


def _study_run_config() -> wandb_logger.WandbConfig:
    return wandb_logger.WandbConfig(
        mode="offline",
        group="per_modality_projection",
        job_type="base_encoder_per_mod_proj",
        notes=HYPOTHESIS,
    )


def _record_start(run: Path, commit: str, pid: int | None = None) -> None:
    """What the experiments framework's RunRecordCallback appends in pre_train."""
    path = run / wandb_logger.PROVENANCE_FILE
    record = json.loads(path.read_text()) if path.exists() else {"starts": []}
    record["starts"].append(
        {
            "commit": commit,
            "image": f"127.0.0.1:5000/terra-lab@sha256:{commit[0] * 64}",
            "pid": os.getpid() if pid is None else pid,
            "host": socket.gethostname(),
        }
    )
    run.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def _segments(run: Path) -> list[wandb_reader.WandbRun]:
    """The run's offline segments (one per attempt), oldest first (two attempts may start
    within the second their folder names resolve, so by the start time inside)."""
    logs = sorted(
        wandb_reader.offline_run_files(run),
        key=lambda log: _run_record(log).start_time.ToNanoseconds(),
    )
    return [wandb_reader.read_finished_run(log) for log in logs]


def test_a_study_run_carries_its_study_variant_hypothesis_and_provenance(tmp_path: Path) -> None:
    trainer = TrainerConfig(run=RunDirConfig(project="proj", name="run-a"), seed=3)
    _record_start(tmp_path, "a" * 40)
    _attempt(tmp_path, range(1, 3), 1.0, _study_run_config(), run_config=trainer)
    (run,) = _segments(tmp_path)
    assert (run.group, run.job_type, run.notes) == (
        "per_modality_projection",
        "base_encoder_per_mod_proj",
        HYPOTHESIS,
    )
    assert run.config["provenance"] == {
        "commit": "a" * 40,
        "image": "127.0.0.1:5000/terra-lab@sha256:" + "a" * 64,
        "seed": 3,
        "study": "per_modality_projection",
        "hypothesis": HYPOTHESIS,
        "variant": "base_encoder_per_mod_proj",
    }
    assert run.config["seed"] == 3  # the run's own config is still all there


def test_a_resumed_study_run_keeps_them_with_the_commit_it_resumed_at(tmp_path: Path) -> None:
    config = _study_run_config()
    _record_start(tmp_path, "a" * 40)
    _attempt(tmp_path, range(1, 5), 1.0, config, crash=True)
    _record_start(tmp_path, "b" * 40)
    _attempt(tmp_path, range(4, 6), 2.0, config)
    first, resumed = _segments(tmp_path)
    assert resumed.run_id == first.run_id
    for segment in (first, resumed):
        assert (segment.group, segment.job_type, segment.notes) == (
            config.group,
            config.job_type,
            config.notes,
        )
        assert segment.config["provenance"]["study"] == config.group
    assert first.config["provenance"]["commit"] == "a" * 40
    assert resumed.config["provenance"]["commit"] == "b" * 40


def test_without_a_record_of_this_start_commit_and_image_are_unknown(tmp_path: Path) -> None:
    # An earlier start of another process recorded itself; this one (no framework) did not.
    _record_start(tmp_path, "a" * 40, pid=os.getpid() + 1)
    _attempt(tmp_path, range(1, 2), 1.0, wandb_logger.WandbConfig(mode="offline"))
    (run,) = _segments(tmp_path)
    assert run.config["provenance"] == {
        "commit": None,
        "image": None,
        "seed": None,
        "study": None,
        "hypothesis": None,
        "variant": None,
    }
    assert (run.group, run.job_type, run.notes) == ("", "", "")


# -- a real run, killed past its last checkpoint and resumed --------------------------------


class _MarkAttempt(Callback):
    """Adds the attempt number to each step's metrics, before any logger reads them."""

    phase = Phase.MEASURE

    def __init__(self, attempt: int) -> None:
        self.attempt = attempt

    def post_step(self, step: int, metrics: dict) -> None:
        metrics["attempt"] = float(self.attempt)


class _Killed(Exception):
    pass


class _KillAfter(Callback):
    """Dies after the loggers wrote step `at`, before any checkpoint of it."""

    def __init__(self, at: int) -> None:
        self.at = at

    def post_step(self, step: int, metrics: dict) -> None:
        if step == self.at:
            raise _Killed


@pytest.mark.parametrize("replayed_steps", wandb_logger.REPLAYED_STEPS)
def test_after_a_requeue_wandb_history_equals_metrics_jsonl_at_every_step(
    tmp_path: Path, replayed_steps: str
) -> None:
    torch.set_num_threads(1)
    data = tiny_run.write_tiny_dataset(tmp_path / "data")
    config = tiny_run.tiny_config(data, tmp_path, "requeued", steps=8, checkpoint_interval=3)
    trainer_config = dataclasses.replace(config.trainer)
    trainer_config.callbacks["wandb"] = wandb_logger.WandbConfig(
        mode="offline", replayed_steps=replayed_steps
    )
    trainer_config.callbacks["loss_plot"] = LossPlotConfig(enabled=False)
    config = dataclasses.replace(config, trainer=trainer_config)
    with pytest.raises(_Killed):
        pretrain.train(config, callbacks=[_MarkAttempt(1), _KillAfter(5)])
    resumed = pretrain.train(config, callbacks=[_MarkAttempt(2)])
    assert resumed.resumed_from is not None and resumed.resumed_from.name == "step_3"

    records = {r["step"]: r for r in read_metrics(resumed.run_dir.metrics_path)}
    history = wandb_history(resumed.run_dir.path)
    assert sorted(history) == sorted(records) == list(range(1, 9))
    assert {step: r["attempt"] for step, r in records.items()} == {
        step: 1.0 if step <= 3 else 2.0 for step in range(1, 9)
    }
    for step, record in records.items():
        for key in ("attempt", "loss", "lr", "grad_norm"):
            assert history[step][f"train/{key}"] == record[key], (step, key)
