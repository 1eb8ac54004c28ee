"""The evaluator: checkpoint loading, the metric set, and recording scores in a run folder."""

import dataclasses
import json
import types
from pathlib import Path

import pytest
import torch

from models.eval import evaluator as evaluator_lib
from models.eval.knn import KnnConfig
from models.eval.landcover import LandCoverTaskConfig
from models.eval.linear_probe import LinearProbeConfig
from models.train import checkpoint as checkpoint_lib
from models.train import tiny_run
from models.train.run_dir import RunDirectory, RunLockedError


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run.write_tiny_dataset(tmp_path_factory.mktemp("tiny"), num_samples=6)


def _model_config(data_dir: Path):
    return tiny_run.tiny_config(data_dir, Path("/unused"), "x", 1).model


def _config(data_dir: Path, methods=evaluator_lib.METHODS) -> evaluator_lib.EvaluatorConfig:
    task = LandCoverTaskConfig(h5_dir=str(data_dir), patch_size=2, timesteps=(0, 1, 2))
    return evaluator_lib.EvaluatorConfig(
        tasks=(task,),
        methods=methods,
        knn=KnnConfig(k=3),
        linear_probe=LinearProbeConfig(epochs=2, batch_size=2),
        batch_size=3,
    )


def test_checkpoint_weights_replace_the_initialisation(tiny_data: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = _model_config(tiny_data).build()
    path = checkpoint_lib.save(tmp_path, 7, {"model": trained.state_dict()}, {})
    torch.manual_seed(1)
    fresh = _model_config(tiny_data).build()
    assert evaluator_lib.load_model_weights(fresh, path) == 7
    for (name, a), b in zip(trained.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_the_weights_of_a_sharded_checkpoint_replace_the_initialisation(
    tiny_data: Path, tmp_path: Path
) -> None:
    # What training writes (models/train/checkpoint.py save_sharded): DCP shards of the model
    # and optimizer; the evaluator reads the model whole in this one process.
    torch.manual_seed(0)
    trained = _model_config(tiny_data).build()
    optimizer = torch.optim.AdamW(trained.parameters())
    state = checkpoint_lib.ShardedState(trained, optimizer)
    path = checkpoint_lib.save_sharded(tmp_path, 9, state, {"trainer": {"step": 9}}, {})
    torch.manual_seed(1)
    fresh = _model_config(tiny_data).build()
    assert evaluator_lib.load_model_weights(fresh, path) == 9
    for (name, a), b in zip(trained.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_evaluating_a_checkpoint_records_every_score_in_the_run_folder(
    tiny_data: Path, tmp_path: Path
) -> None:
    run_dir = RunDirectory(tmp_path / "runs" / "p" / "r").create()
    torch.manual_seed(0)
    model = _model_config(tiny_data).build()
    checkpoint_lib.save(run_dir.checkpoints_dir, 5, {"model": model.state_dict()}, {})
    result = evaluator_lib.evaluate_checkpoint(
        _model_config(tiny_data),
        evaluator_lib.latest_checkpoint(run_dir.path),
        _config(tiny_data),
        run_dir=run_dir.path,
    )
    expected = {
        f"eval/landcover/{key}"
        for key in (
            "knn_accuracy",
            "knn_macro_f1",
            "lp_accuracy",
            "lp_macro_f1",
            "seg_miou",
            "seg_accuracy",
            "seg_macro_f1",
            "patch_knn_accuracy",
            "patch_knn_macro_f1",
            "seconds",
        )
    }
    assert set(result.metrics) == expected and result.step == 5
    saved = json.loads((run_dir.path / "eval" / "downstream_step_5.json").read_text())
    assert saved["metrics"] == result.metrics
    line = json.loads(run_dir.metrics_path.read_text().splitlines()[-1])
    assert line == {"step": 5, **result.metrics}


def test_patch_knn_scores_every_patch_against_the_training_patches(tiny_data: Path) -> None:
    """With k = 1 and the test tiles also in the training set, every patch finds itself."""
    torch.manual_seed(0)
    encoder = _model_config(tiny_data).build().encoder
    config = dataclasses.replace(_config(tiny_data, methods=("patch_knn",)), knn=KnnConfig(k=1))
    evaluator = config.build()
    data = evaluator.task_data(evaluator.tasks[0])
    data.test = data.train  # same tiles on both sides
    scores = evaluator.evaluate_task(encoder, data)
    assert scores["eval/landcover/patch_knn_accuracy"] == 1.0


def test_position_centering_lets_patch_knn_see_content_under_a_shared_position_code() -> None:
    """Embeddings = a large code per patch position (the same in every tile) + a small class
    signal: raw cosine kNN matches positions; centred, it matches classes."""
    generator = torch.Generator().manual_seed(0)
    tiles, side, width, classes = 8, 4, 16, 3  # fewer tiles than k = 20
    position_code = 10 * torch.randn(side, side, width, generator=generator)
    class_code = torch.randn(classes, width, generator=generator)

    def patches(labels: torch.Tensor) -> torch.Tensor:
        noise = 0.05 * torch.randn(*labels.shape, width, generator=generator)
        return position_code + class_code[labels] + noise

    train_y = torch.randint(0, classes, (tiles, side, side), generator=generator)
    test_y = torch.randint(0, classes, (tiles, side, side), generator=generator)
    data = types.SimpleNamespace(num_classes=classes)  # all _patch_knn reads of the task
    scores = {}
    for center in (False, True):
        config = evaluator_lib.EvaluatorConfig(
            tasks=(LandCoverTaskConfig(),), center_patch_positions=center
        )
        result = config.build()._patch_knn(patches(train_y), train_y, patches(test_y), test_y, data)
        scores[center] = result["accuracy"]
    assert scores[True] > 0.95
    assert scores[False] < 0.6


def test_position_means_count_only_scored_patches() -> None:
    patches = torch.tensor([[[[1.0]], [[5.0]]], [[[3.0]], [[100.0]]]])  # [N=2, h=2, w=1, D=1]
    scored = torch.tensor([[[True], [True]], [[True], [False]]])
    means = evaluator_lib.position_means(patches, scored)
    assert means.flatten().tolist() == [2.0, 5.0]


def test_methods_select_the_scores(tiny_data: Path) -> None:
    torch.manual_seed(0)
    encoder = _model_config(tiny_data).build().encoder
    scores = _config(tiny_data, methods=("knn",)).build().evaluate(encoder)
    assert sorted(scores) == [
        "eval/landcover/knn_accuracy",
        "eval/landcover/knn_macro_f1",
        "eval/landcover/seconds",
    ]


def test_a_run_folder_held_by_training_is_not_written(tmp_path: Path) -> None:
    run_dir = RunDirectory(tmp_path).create()
    result = evaluator_lib.EvaluationResult(step=1, checkpoint=None, metrics={}, seconds=0.0)
    with run_dir.lock():
        with pytest.raises(RunLockedError):
            evaluator_lib.record_results(tmp_path, result)


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="EvaluatorConfig.methods"):
        evaluator_lib.EvaluatorConfig(methods=("finetune",))
    with pytest.raises(ValueError, match=r"EvaluatorConfig.precision must be one of"):
        evaluator_lib.EvaluatorConfig(precision="fp16")
