"""evaluate and visualize on a tiny trained run: metrics are finite and written, a PNG per
instance is drawn, and a missing checkpoint falls back to the untrained model."""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import math
from pathlib import Path

import pytest
import torch

from experiments.framework import cli, evaluate, inspection, testing, training, visualize

NANO = importlib.import_module("experiments.nano")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("run")
    h5_dir = testing.write_tiny_dataset(root / "data", num_samples=6)
    config, _ = testing.experiment_config(NANO)
    config = testing.tiny_config(config, h5_dir, root / "runs")
    result = training.train(config)
    return config, result


def test_evaluate_reports_finite_metrics_of_the_checkpoint(trained) -> None:
    config, result = trained
    checkpoint = inspection.find_checkpoint(config, None)
    assert checkpoint == result.checkpoints[-1]
    metrics = evaluate.evaluate(config, checkpoint)
    assert metrics["step"] == 1
    for key in ("loss", "patch_disc", "embedding_std", "effective_rank"):
        assert math.isfinite(metrics[key]), key
    assert metrics["loss"] >= metrics["patch_disc"]
    json.dumps(metrics)  # what evaluate writes must be JSON


def test_evaluate_is_deterministic_for_a_checkpoint(trained) -> None:
    config, result = trained
    first = evaluate.evaluate(config, result.checkpoints[-1])
    second = evaluate.evaluate(config, result.checkpoints[-1])
    assert first == second


def test_effective_rank_of_embeddings_on_a_line_is_one() -> None:
    line = torch.arange(8.0)[:, None] * torch.tensor([[1.0, 2.0, 3.0]])
    assert evaluate.effective_rank(line) == pytest.approx(1.0, abs=1e-6)


def test_the_evaluate_command_reports_one_knn_accuracy_the_downstream_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h5_dir = testing.write_tiny_dataset(tmp_path / "data", num_samples=6)
    monkeypatch.setenv("BUILD_WORKSPACE_DIRECTORY", str(tmp_path / "ws"))
    monkeypatch.delenv("TERRA_RUN_ROOT", raising=False)
    out, err = io.StringIO(), io.StringIO()
    argv = ["evaluate", "nano_eval", "local", "--untrained"]
    assert cli.run(testing.tiny_builders(NANO, h5_dir), argv, "nano", out, err) == 0, err.getvalue()
    printed = [line.split()[0] for line in out.getvalue().splitlines() if line.startswith("  ")]
    assert [key for key in printed if key.rpartition("/")[2] == "knn_accuracy"] == [
        "eval/landcover/knn_accuracy"
    ]
    (written,) = (tmp_path / "ws" / "runs").glob("*/nano_eval/eval/step_0.json")
    assert not [key for key in json.loads(written.read_text()) if "knn" in key]


def test_visualize_draws_one_png_per_instance(trained, tmp_path: Path) -> None:
    config, result = trained
    paths = visualize.visualize(config, result.checkpoints[-1], tmp_path)
    assert len(paths) == min(config.visualize.num_samples, 6)
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_named_checkpoint_that_does_not_exist_is_an_error(trained, tmp_path: Path) -> None:
    config, _ = trained
    with pytest.raises(inspection.NoCheckpointError):
        inspection.find_checkpoint(config, str(tmp_path / "nope"))


def test_downstream_scores_are_recorded_in_the_run_folder(trained) -> None:
    from models.eval.evaluator import EvaluatorConfig
    from models.eval.landcover import LandCoverTaskConfig

    config, result = trained
    task = LandCoverTaskConfig(
        h5_dir=config.dataset.h5_dir, patch_size=8, token_budget=None, segmentation=False
    )
    metrics = evaluate.downstream(
        config, result.checkpoints[-1], EvaluatorConfig(tasks=(task,), methods=("knn",))
    )
    assert 0.0 <= metrics["eval/landcover/knn_accuracy"] <= 1.0
    assert (inspection.run_dir(config) / "eval" / "downstream_step_1.json").is_file()


def test_existing_runs_names_each_run_with_a_complete_checkpoint_once(tmp_path: Path) -> None:
    config, _ = testing.experiment_config(NANO)
    run = dataclasses.replace(config.trainer.run, root=str(tmp_path))
    config = dataclasses.replace(config, trainer=dataclasses.replace(config.trainer, run=run))
    for project, name, steps in (("p", "two", (1, 2)), ("p", "torn", (3,)), ("q", "none", ())):
        checkpoints = tmp_path / project / name / "checkpoints"
        checkpoints.mkdir(parents=True)
        for step in steps:
            (checkpoints / f"step_{step}").mkdir()
            meta = {"step": step, "parts": ["model"]} if name != "torn" else "{torn"
            (checkpoints / f"step_{step}" / "meta.json").write_text(json.dumps(meta))
    assert inspection.existing_runs(config) == ["p/two"]
