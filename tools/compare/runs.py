"""Runs to compare, read from our run folders or from W&B runs, in one shape.

Sources, tried in this order for each run:
    run folder   runs/<project>/<run>/ with metrics.jsonl (one JSON object per logged step)
                 and config.yaml (the resolved config); downstream scores also come from
                 eval/downstream_step_<N>.json (the offline evaluator's records)
    W&B offline  wandb/offline-run-*/run-<id>.wandb inside a run folder, or a folder of
                 offline runs (models/train/callbacks/wandb_reader.py); used when there is no
                 metrics.jsonl
    W&B online   a project name that is no folder, read with the W&B API (needs network and
                 WANDB_API_KEY)

Keys are normalised to the run folder's names: the trainer logs to W&B as `train/<key>`, so a
leading "train/" is dropped (the in-loop evaluator's `eval/<task>/<metric>` arrive in W&B as
`train/eval/...`).

Parameter counts, in order: params.json in the run folder ({"encoder": n, "decoder": n,
"trainable": n, "total": n}); else the model rebuilt from config.yaml on the meta device
(needs the experiments framework, which rebuilds any config tree with `_class_` names); else
none, with a note saying why.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import yaml

from models.train.callbacks import wandb_reader

logger = logging.getLogger(__name__)

TRAIN_PREFIX = "train/"
EVAL_PREFIX = "eval/"
STEP_KEYS = ("step", "eval/step", "_step")
"""Where a record's step is, in order: ours, the offline evaluator's W&B axis, W&B's."""
PARAMS_FILE = "params.json"


@dataclasses.dataclass
class Run:
    """One run, whatever its source.

    Attributes:
        name: the run name (folder name or W&B display name).
        source: where it was read from ("folder", "wandb-offline", "wandb-online").
        location: the folder, file or W&B path it came from.
        history: per logged step, {"step": N, key: value, ...}, ascending steps.
        config: nested plain data (empty when unknown).
        params: parameter counts by part, or None.
        params_note: how `params` was obtained, or why it is missing.
    """

    name: str
    source: str
    location: str
    history: list[dict[str, Any]]
    config: dict[str, Any]
    params: dict[str, int] | None = None
    params_note: str = ""

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(steps, values) of every record that has a finite number for `key`."""
        steps, values = [], []
        for record in self.history:
            value = record.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if value == value and abs(value) != float("inf"):
                    steps.append(int(record["step"]))
                    values.append(float(value))
        return steps, values

    def latest(self, key: str) -> tuple[int, float] | None:
        """(step, value) of the last record with `key`."""
        steps, values = self.series(key)
        return (steps[-1], values[-1]) if steps else None

    def keys(self) -> set[str]:
        return {key for record in self.history for key in record if key != "step"}

    @property
    def final_step(self) -> int:
        return max((int(record["step"]) for record in self.history), default=0)


def normalise_key(key: str) -> str:
    return key[len(TRAIN_PREFIX) :] if key.startswith(TRAIN_PREFIX) else key


def _merge_by_step(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with a step -> one record per step (later rows win), ascending."""
    merged: dict[int, dict[str, Any]] = {}
    for row in rows:
        step = next((row[key] for key in STEP_KEYS if key in row), None)
        if step is None:
            continue
        record = merged.setdefault(int(step), {"step": int(step)})
        for key, value in row.items():
            if key in STEP_KEYS or key.startswith("_"):
                continue
            record[normalise_key(key)] = value
    return [merged[step] for step in sorted(merged)]


def read_metrics_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl; a torn (unparsable) line is skipped."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _downstream_records(folder: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((folder / "eval").glob("downstream_step_*.json")):
        try:
            saved = json.loads(path.read_text())
        except ValueError:
            logger.warning("skipping unreadable %s", path)
            continue
        rows.append({"step": saved["step"], **saved.get("metrics", {})})
    return rows


def load_folder(folder: Path) -> Run:
    """A run folder (metrics.jsonl + config.yaml), or its offline W&B run when it has no
    metrics.jsonl."""
    metrics_path = folder / "metrics.jsonl"
    config_path = folder / "config.yaml"
    try:
        config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ValueError(
            f"{config_path} is not valid YAML{where}; restore it, or compare without that run"
        ) from None
    if metrics_path.is_file():
        rows = read_metrics_jsonl(metrics_path) + _downstream_records(folder)
        run = Run(folder.name, "folder", str(folder), _merge_by_step(rows), config or {})
    else:
        logs = wandb_reader.offline_run_files(folder)
        if not logs:
            raise FileNotFoundError(f"{folder} has neither metrics.jsonl nor an offline W&B run")
        run = load_wandb_offline(logs[-1])
        run.name = folder.name
        run.config = config or run.config
    run.params, run.params_note = parameter_counts(folder, run.config)
    return run


def load_wandb_offline(path: Path) -> Run:
    """One `.wandb` log as a Run."""
    parsed = wandb_reader.read_run(path)
    if not parsed.finished:
        logger.warning(
            "%s has no exit record: the run is still being written or its process died; "
            "its history is read up to the last whole record",
            path,
        )
    return Run(
        name=parsed.name,
        source="wandb-offline",
        location=str(path),
        history=_merge_by_step(parsed.history),
        config=parsed.config,
        params=None,
        params_note="W&B run without a params.json or config.yaml: no parameter count",
    )


def load_wandb_online(project: str, entity: str | None = None) -> list[Run]:
    """Every run of a W&B project through the public API (network and an API key)."""
    import wandb

    api = wandb.Api()
    path = f"{entity}/{project}" if entity else project
    runs = []
    for remote in api.runs(path):
        history = _merge_by_step(list(remote.scan_history()))
        config = {key: value for key, value in dict(remote.config).items() if key != "_wandb"}
        run = Run(remote.name, "wandb-online", f"wandb:{path}/{remote.id}", history, config)
        run.params, run.params_note = parameter_counts(None, config)
        runs.append(run)
    return runs


def _is_run_folder(folder: Path) -> bool:
    return (folder / "metrics.jsonl").is_file() or bool(wandb_reader.offline_run_files(folder))


def discover(target: str, runs_root: Path, entity: str | None = None) -> list[Run]:
    """The runs `target` names: a run folder, a folder of run folders, a folder of offline
    W&B runs, a project under `runs_root`, or (none of these) a W&B project online."""
    path = Path(target)
    candidates = [path] if path.is_absolute() else [path, runs_root / target]
    for folder in candidates:
        if not folder.is_dir():
            continue
        if (folder / "metrics.jsonl").is_file() or (folder / "config.yaml").is_file():
            return [load_folder(folder)]
        children = sorted(child for child in folder.iterdir() if child.is_dir())
        runs = [load_folder(child) for child in children if _is_run_folder(child)]
        if runs:
            return runs
        logs = wandb_reader.offline_run_files(folder)
        if logs:
            return [load_wandb_offline(log) for log in logs]
        raise FileNotFoundError(f"{folder} holds no run folder and no offline W&B run")
    if os.environ.get("WANDB_API_KEY"):
        return load_wandb_online(target, entity)
    raise FileNotFoundError(
        f"{target!r} is not a folder (looked in {[str(c) for c in candidates]}) and "
        "WANDB_API_KEY is unset, so it cannot be read as an online W&B project"
    )


def parameter_counts(
    folder: Path | None, config: dict[str, Any]
) -> tuple[dict[str, int] | None, str]:
    """(counts, note): params.json, else the model rebuilt from the config, else None."""
    if folder is not None and (folder / PARAMS_FILE).is_file():
        counts = json.loads((folder / PARAMS_FILE).read_text())
        return {key: int(value) for key, value in counts.items()}, f"from {PARAMS_FILE}"
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict) or "_class_" not in model:
        return None, "no params.json and no model config with class names: not counted"
    try:
        from experiments.framework.subcommands import parameter_counts as count_model
        from models.config import serialization
    except ImportError as error:
        return None, f"the experiments framework is not importable ({error}): not counted"
    try:
        counts = count_model(serialization.from_dict(model))
    except Exception as error:  # a config from another code version may not rebuild
        return None, f"the saved model config does not rebuild here ({error}): not counted"
    return counts, "counted by rebuilding the model from config.yaml (meta device)"
