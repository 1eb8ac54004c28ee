"""Reading runs: run folders, downstream records, parameter counts, offline W&B runs."""

import json
from pathlib import Path

import pytest
import yaml

from models.train.callbacks import wandb_reader
from tools.compare import runs


def _folder(root: Path, name: str, losses: list[float], config: dict | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    lines = [json.dumps({"step": i + 1, "loss": loss}) for i, loss in enumerate(losses)]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 9, "lo')  # torn tail
    (folder / "config.yaml").write_text(yaml.safe_dump(config or {"experiment": name}))
    return folder


def test_a_run_folder_gives_history_config_and_downstream_records(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "base", [3.0, 2.0])
    (folder / "eval").mkdir()
    record = {"step": 2, "checkpoint": None, "metrics": {"eval/t/knn_accuracy": 0.5}}
    (folder / "eval" / "downstream_step_2.json").write_text(json.dumps(record))
    (folder / "params.json").write_text(json.dumps({"trainable": 10, "total": 12}))
    run = runs.load_folder(folder)
    assert run.series("loss") == ([1, 2], [3.0, 2.0])
    assert run.latest("eval/t/knn_accuracy") == (2, 0.5)
    assert run.config == {"experiment": "base"}
    assert run.params == {"trainable": 10, "total": 12} and "params.json" in run.params_note


def test_a_project_folder_lists_its_runs_and_names_resolve_under_the_runs_root(
    tmp_path: Path,
) -> None:
    project = tmp_path / "runs" / "study"
    _folder(project, "base", [1.0])
    _folder(project, "variant", [2.0])
    (project / "compare").mkdir()  # a previous report is not a run
    found = runs.discover("study", tmp_path / "runs")
    assert [run.name for run in found] == ["base", "variant"]


def test_a_model_config_without_class_names_is_not_counted_and_says_why(tmp_path: Path) -> None:
    run = runs.load_folder(_folder(tmp_path, "r", [1.0], {"model": {"width": 8}}))
    assert run.params is None and "class names" in run.params_note


def test_a_missing_project_without_w_and_b_credentials_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with pytest.raises(FileNotFoundError, match="WANDB_API_KEY is unset"):
        runs.discover("no_such_project", tmp_path)


def test_train_prefixes_of_w_and_b_keys_are_dropped() -> None:
    rows = [{"_step": 3, "train/loss": 1.0, "train/eval/x/knn_accuracy": 0.2, "_runtime": 5}]
    assert runs._merge_by_step(rows) == [{"step": 3, "loss": 1.0, "eval/x/knn_accuracy": 0.2}]


def test_offline_evaluation_scores_logged_to_w_and_b_are_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb")
    from models.eval.evaluator import log_to_wandb

    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    folder = tmp_path / "project" / "run1"
    folder.mkdir(parents=True)
    log_to_wandb(folder, 40, {"eval/landcover/knn_accuracy": 0.625}, mode="offline")
    (log,) = wandb_reader.offline_run_files(folder)
    assert wandb_reader.read_finished_run(log).finished  # W&B's writer flushed everything
    run = runs.load_folder(folder)  # no metrics.jsonl: the offline W&B run is read
    assert run.source == "wandb-offline" and run.name == "run1"
    assert run.latest("eval/landcover/knn_accuracy") == (40, 0.625)
    assert (folder / "wandb" / "run_id").is_file()
