"""Tests for metrics.jsonl: one record per logged step, clean continuation after a crash."""

import json
import types
from pathlib import Path

from models.train.callbacks import metrics_logger
from models.train.run_dir import RunDirectory


def _callback(tmp_path: Path, log_interval: int = 1, max_steps: int = 100):
    callback = metrics_logger.MetricsLoggerCallback()
    run_dir = RunDirectory(tmp_path).create()
    callback.attach(
        types.SimpleNamespace(
            is_main=True,
            run_dir=run_dir,
            is_log_step=lambda step: step % log_interval == 0 or step == max_steps,
        )
    )
    return callback, run_dir.metrics_path


def test_each_log_step_appends_one_json_object(tmp_path: Path) -> None:
    callback, path = _callback(tmp_path, log_interval=2, max_steps=5)
    for step in range(1, 6):
        callback.post_step(step, {"loss": 1.0 / step, "step": float(step)})
    callback.post_train()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 5]
    assert records[0] == {"step": 2, "loss": 0.5}


def test_resuming_drops_records_past_the_checkpoint_and_a_torn_line(tmp_path: Path) -> None:
    callback, path = _callback(tmp_path)
    lines = [json.dumps({"step": s, "loss": float(s)}) for s in range(1, 6)]
    path.write_text("\n".join(lines) + '\n{"step": 6, "lo')  # killed mid-write at step 6
    # The run resumes from a checkpoint of step 3: its next step is 4.
    callback.post_step(4, {"loss": 40.0})
    callback.post_train()
    records = metrics_logger.read_metrics(path)
    assert [(r["step"], r["loss"]) for r in records] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def test_only_rank_zero_writes(tmp_path: Path) -> None:
    callback, path = _callback(tmp_path)
    callback.trainer.is_main = False
    callback.post_step(1, {"loss": 1.0})
    assert not path.exists()
