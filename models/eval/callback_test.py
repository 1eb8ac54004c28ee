"""The in-loop evaluator callback: scores reach metrics.jsonl through the trainer."""

import dataclasses
import json
import types
from pathlib import Path

import pytest
import torch

from models.eval import callback as callback_lib
from models.eval.evaluator import EvaluatorConfig, evaluate_checkpoint
from models.eval.knn import KnnConfig
from models.eval.landcover import LandCoverTaskConfig
from models.eval.linear_probe import LinearProbeConfig
from models.train import distributed, pretrain, tiny_run
from models.train.callbacks.callback import Callback
from models.train.callbacks.metrics_logger import MetricsLoggerCallback
from models.train.callbacks.wandb_logger import WandbCallback, WandbConfig


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run.write_tiny_dataset(tmp_path_factory.mktemp("tiny"), num_samples=6)


def _evaluator(data_dir: Path) -> EvaluatorConfig:
    task = LandCoverTaskConfig(
        h5_dir=str(data_dir), patch_size=2, timesteps=(0, 1, 2), train_fraction=0.5
    )
    return EvaluatorConfig(
        tasks=(task,),
        knn=KnnConfig(k=3),
        linear_probe=LinearProbeConfig(epochs=2, batch_size=2),
        batch_size=2,
    )


def test_scores_of_due_steps_are_written_to_metrics_jsonl_by_the_trainer(
    tiny_data: Path, tmp_path: Path
) -> None:
    config = tiny_run.tiny_config(tiny_data, tmp_path, "eval", steps=3, global_batch_size=2)
    evaluation = callback_lib.EvaluatorCallbackConfig(evaluator=_evaluator(tiny_data), interval=2)
    trainer = pretrain.train(config, callbacks=[evaluation.build()])
    records = [json.loads(line) for line in trainer.run_dir.metrics_path.read_text().splitlines()]
    evaluated = [r["step"] for r in records if "eval/landcover/knn_accuracy" in r]
    assert evaluated == [2, 3]  # every 2 steps, and after the last one
    last = records[-1]
    for key in ("knn_macro_f1", "lp_accuracy", "seg_miou", "seg_accuracy"):
        assert 0.0 <= last[f"eval/landcover/{key}"] <= 1.0
    assert "loss" in last  # the same record as the training metrics of that step


def test_other_ranks_and_steps_between_evaluations_add_nothing(tiny_data: Path) -> None:
    torch.manual_seed(0)
    model = tiny_run.tiny_config(tiny_data, Path("/unused"), "x", 1).model.build()
    trainer = types.SimpleNamespace(
        is_main=True,
        max_steps=10,
        log_interval=1,
        train_module=types.SimpleNamespace(model=model),
    )
    callback = callback_lib.EvaluatorCallbackConfig(evaluator=_evaluator(tiny_data), interval=5)
    callback = callback.build()
    callback.attach(trainer)
    metrics: dict[str, float] = {"loss": 1.0}
    callback.post_step(4, metrics)
    assert metrics == {"loss": 1.0}
    trainer.is_main = False
    callback.post_step(5, metrics)
    assert metrics == {"loss": 1.0}


def test_the_evaluator_runs_before_the_metrics_writer_and_wandb(
    tiny_data: Path, tmp_path: Path
) -> None:
    # Its scores join the step's metrics before metrics.jsonl and W&B write them.
    config = tiny_run.tiny_config(tiny_data, tmp_path, "order", steps=1, global_batch_size=2)
    config.trainer.callbacks["evaluator"] = callback_lib.EvaluatorCallbackConfig(
        evaluator=_evaluator(tiny_data)
    )
    config.trainer.callbacks["wandb"] = WandbConfig(mode="disabled")  # built, never started
    env = distributed.DistributedEnv(rank=0, world_size=1, local_rank=0)
    trainer = pretrain.build_trainer(config, env, torch.device("cpu"))
    order = [type(callback) for callback in trainer.callbacks]
    evaluator = order.index(callback_lib.EvaluatorCallback)
    assert evaluator < order.index(MetricsLoggerCallback) < order.index(WandbCallback)


def test_an_interval_that_skips_logging_steps_is_refused() -> None:
    callback = callback_lib.EvaluatorCallbackConfig(interval=3).build()
    callback.attach(types.SimpleNamespace(log_interval=2))
    with pytest.raises(ValueError, match="multiple of the trainer's log_interval"):
        callback.pre_train()


def test_task_data_that_cannot_load_stops_the_run_before_its_first_step(
    tiny_data: Path, tmp_path: Path
) -> None:
    config = tiny_run.tiny_config(tiny_data, tmp_path, "no_data", steps=2, global_batch_size=2)
    missing = dataclasses.replace(
        _evaluator(tiny_data).tasks[0], h5_dir=str(tmp_path / "no_such_tiles")
    )
    evaluation = callback_lib.EvaluatorCallbackConfig(
        evaluator=dataclasses.replace(_evaluator(tiny_data), tasks=(missing,)), interval=1
    )
    steps_started: list[int] = []

    class StepRecorder(Callback):
        def pre_step(self, step: int) -> None:
            steps_started.append(step)

    with pytest.raises((FileNotFoundError, ValueError), match="no_such_tiles"):
        pretrain.train(config, callbacks=[evaluation.build(), StepRecorder()])
    assert steps_started == []
    assert not list(tmp_path.rglob("step_*"))  # no checkpoint either


def test_in_loop_scores_equal_the_offline_scores_of_the_same_checkpoint(
    tiny_data: Path, tmp_path: Path
) -> None:
    config = tiny_run.tiny_config(
        tiny_data, tmp_path, "same", steps=2, global_batch_size=2, checkpoint_interval=2
    )
    in_loop = callback_lib.EvaluatorCallbackConfig(evaluator=_evaluator(tiny_data), interval=2)
    callback = in_loop.build()
    trainer = pretrain.train(config, callbacks=[callback])
    (step, scores), *_ = callback.history
    offline = evaluate_checkpoint(
        config.model, Path(trainer.run_dir.path) / "checkpoints" / "step_2", _evaluator(tiny_data)
    )
    assert step == offline.step == 2
    assert "eval/landcover/seg_miou" in scores
    scores = {key: value for key, value in scores.items() if not key.endswith("/seconds")}
    assert scores == pytest.approx(
        {key: value for key, value in offline.metrics.items() if not key.endswith("/seconds")},
        abs=1e-6,
    )
