"""The downstream evaluator: frozen-encoder embeddings scored by kNN and linear probes.

    evaluator = EvaluatorConfig().build()          # tasks load their data once, lazily
    metrics = evaluator.evaluate(model.encoder)    # {"eval/landcover/knn_accuracy": ..., ...}

Per task (models/eval/landcover.py, models/eval/geobench.py), with the encoder in eval mode
and every present input token visible:
    knn           k = 20 cosine kNN with similarity-weighted votes on the pooled embeddings:
                  knn_accuracy, knn_macro_f1
    linear_probe  AdamW linear probe on the pooled embeddings: lp_accuracy, lp_macro_f1
    segmentation  AdamW linear probe per patch on the patch embeddings (tasks with patch
                  labels): seg_miou, seg_accuracy, seg_macro_f1
    patch_knn     the same kNN per patch: every scored test patch against (at most
                  `max_knn_patches`, a seeded subset of) the training patches:
                  patch_knn_accuracy, patch_knn_macro_f1. First, the mean training
                  embedding of each patch position is subtracted from every patch at that
                  position (train and test alike): the encoder adds a 2D position encoding
                  that is the same for every tile, and on raw embeddings cosine kNN mostly
                  matched patches at the same place in other tiles (a random-init nano
                  encoder: 0.20 raw, majority class 0.21). A 64 px tile mixes several
                  classes, so its majority class is a noisy label (kNN on the tile-mean input
                  spectra scores ~0.35 on the synthetic tiles); a patch's is nearly pure
                  (the same features per patch score ~0.70)
Keys are `eval/<task>/<metric>`, plus `eval/<task>/seconds`.

Offline, `evaluate_checkpoint` scores a checkpoint directory (`runs/<p>/<r>/checkpoints/
step_<N>/`) and, given the run folder, records the scores there: `eval/downstream_step_<N>.json`
and a `{"step": N, "eval/...": ...}` line in metrics.jsonl, under the run folder's lock (the
in-loop callback, models/eval/callback.py, writes through the trainer instead).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.config.configurable import Configurable
from models.data.dataset import DatasetItem
from models.encoder.encoder import Encoder
from models.eval import embeddings as embeddings_lib
from models.eval.geobench import GeoBenchClassificationTaskConfig
from models.eval.knn import KnnConfig
from models.eval.landcover import LandCoverTaskConfig
from models.eval.linear_probe import LinearProbeConfig
from models.eval.metrics import IGNORE_LABEL, classification_scores, segmentation_scores
from models.eval.tasks import EvalTask, TaskData
from models.nn.precision import check_precision
from models.train import checkpoint as checkpoint_lib
from models.train.run_dir import RunDirectory

logger = logging.getLogger(__name__)

METHODS = ("knn", "linear_probe", "segmentation", "patch_knn")
METRIC_PREFIX = "eval"
MODEL_PART = "model"
"""The checkpoint part that holds the model's state dict (`model.pt`, or the model's entries
of `sharded/` in a sharded checkpoint: models/train/checkpoint.py reads either whole)."""

TaskConfig = LandCoverTaskConfig | GeoBenchClassificationTaskConfig


@dataclasses.dataclass(kw_only=True)
class EvaluatorConfig(Configurable["Evaluator"]):
    """What to evaluate and how.

    Attributes:
        tasks: task configs (each `build()`s an EvalTask).
        methods: a non-empty subset of METHODS.
        knn: k and temperature of the kNN vote.
        linear_probe: optimisation of both probes.
        batch_size: samples per encoder forward.
        input_res_m: metres per input pixel given to the encoder.
        max_knn_patches: training patches the per-patch kNN searches (a seeded subset when
            there are more; 8192 x 8192 similarities take ~1 GFLOP per 1000 test patches).
        center_patch_positions: subtract each patch position's mean training embedding
            before the per-patch kNN (module docstring); False scores raw embeddings.
        precision: "fp32", or "bf16" to embed under bf16 autocast (models/nn/precision.py;
            1.9x faster for a base encoder on CPU, cosine 0.99999 to fp32).
    """

    tasks: tuple[TaskConfig, ...] = dataclasses.field(
        default_factory=lambda: (LandCoverTaskConfig(),)
    )
    methods: tuple[str, ...] = METHODS
    knn: KnnConfig = dataclasses.field(default_factory=KnnConfig)
    linear_probe: LinearProbeConfig = dataclasses.field(default_factory=LinearProbeConfig)
    batch_size: int = 8
    input_res_m: float = 10.0
    max_knn_patches: int = 8192
    center_patch_positions: bool = True
    precision: str = "fp32"

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        self.methods = tuple(self.methods)
        if not self.tasks:
            raise ValueError("EvaluatorConfig.tasks is empty; give at least one task config")
        names = [task.name for task in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"EvaluatorConfig.tasks have repeated names {names}")
        bad = [method for method in self.methods if method not in METHODS]
        if bad or not self.methods:
            raise ValueError(
                f"EvaluatorConfig.methods must be a non-empty subset of {METHODS}, got "
                f"{self.methods}"
            )
        if self.batch_size < 1:
            raise ValueError(f"EvaluatorConfig.batch_size must be >= 1, got {self.batch_size}")
        if not self.input_res_m > 0:
            raise ValueError(f"EvaluatorConfig.input_res_m must be > 0, got {self.input_res_m}")
        try:
            check_precision(self.precision)
        except ValueError as error:
            raise ValueError(f"EvaluatorConfig.{error}") from None
        if self.max_knn_patches < 1:
            raise ValueError(
                f"EvaluatorConfig.max_knn_patches must be >= 1, got {self.max_knn_patches}"
            )

    def build(self) -> Evaluator:
        return Evaluator(self)


class Evaluator:
    """Scores an encoder on the configured tasks; task data is loaded once and kept."""

    def __init__(self, config: EvaluatorConfig) -> None:
        self.config = config
        self.tasks: list[EvalTask] = [task.build() for task in config.tasks]
        self._data: dict[str, TaskData] = {}

    def task_data(self, task: EvalTask) -> TaskData:
        if task.name not in self._data:
            self._data[task.name] = task.load()
        return self._data[task.name]

    def evaluate(self, encoder: Encoder) -> dict[str, float]:
        """Every task's scores (see the module docstring); the encoder is left as it was."""
        metrics: dict[str, float] = {}
        for task in self.tasks:
            metrics.update(self.evaluate_task(encoder, self.task_data(task)))
        return metrics

    def evaluate_task(self, encoder: Encoder, data: TaskData) -> dict[str, float]:
        started = time.perf_counter()
        config = self.config

        def embed(items: list[DatasetItem]) -> embeddings_lib.Embeddings:
            return embeddings_lib.embed_items(
                encoder,
                items,
                data.patch_size,
                config.batch_size,
                config.input_res_m,
                precision=config.precision,
            )

        train, test = embed(data.train.items), embed(data.test.items)
        prefix = f"{METRIC_PREFIX}/{data.name}"
        out: dict[str, float] = {}
        if "knn" in config.methods:
            classifier = config.knn.build(train.pooled, data.train.labels, data.num_classes)
            predictions = classifier.predict(test.pooled)
            scores = classification_scores(predictions, data.test.labels, data.num_classes)
            out.update({f"{prefix}/knn_{key}": value for key, value in scores.items()})
        if "linear_probe" in config.methods:
            probe = config.linear_probe.build(train.pooled, data.train.labels, data.num_classes)
            scores = classification_scores(
                probe.predict(test.pooled), data.test.labels, data.num_classes
            )
            out.update({f"{prefix}/lp_{key}": value for key, value in scores.items()})
        has_patches = data.train.patch_labels is not None
        if has_patches and {"segmentation", "patch_knn"} & set(config.methods):
            train_labels = _scored_patches(data.train.patch_labels, train.patch_counts)
            test_labels = _scored_patches(data.test.patch_labels, test.patch_counts)
        if has_patches and "patch_knn" in config.methods:
            scores = self._patch_knn(train.patches, train_labels, test.patches, test_labels, data)
            out.update({f"{prefix}/patch_knn_{key}": value for key, value in scores.items()})
        if has_patches and "segmentation" in config.methods:
            probe = config.linear_probe.build(train.patches, train_labels, data.num_classes)
            scores = segmentation_scores(probe.predict(test.patches), test_labels, data.num_classes)
            out.update({f"{prefix}/seg_{key}": value for key, value in scores.items()})
        out[f"{prefix}/seconds"] = time.perf_counter() - started
        return out

    def _patch_knn(
        self,
        train_patches: torch.Tensor,
        train_labels: torch.Tensor,
        test_patches: torch.Tensor,
        test_labels: torch.Tensor,
        data: TaskData,
    ) -> dict[str, float]:
        """kNN over patches `[N, h, w, D]`; unscored patches are left out on both sides."""
        if self.config.center_patch_positions:
            position_mean = position_means(train_patches, train_labels != IGNORE_LABEL)
            train_patches, test_patches = (
                train_patches - position_mean,
                test_patches - position_mean,
            )
        width = train_patches.shape[-1]
        train_rows, train_y = train_patches.reshape(-1, width), train_labels.reshape(-1)
        keep = train_y != IGNORE_LABEL
        train_rows, train_y = train_rows[keep], train_y[keep]
        if train_rows.shape[0] > self.config.max_knn_patches:
            generator = torch.Generator().manual_seed(0)
            pick = torch.randperm(train_rows.shape[0], generator=generator)
            pick = pick[: self.config.max_knn_patches]
            train_rows, train_y = train_rows[pick], train_y[pick]
        test_rows, test_y = test_patches.reshape(-1, width), test_labels.reshape(-1)
        scored = test_y != IGNORE_LABEL
        classifier = self.config.knn.build(train_rows, train_y, data.num_classes)
        predictions = classifier.predict(test_rows[scored])
        return classification_scores(predictions, test_y[scored], data.num_classes)


def position_means(patches: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """`[h, w, D]`: the mean of `patches` `[N, h, w, D]` over the N tiles at each position,
    counting only `scored` `[N, h, w]` patches (zero where a position has none)."""
    weights = scored.to(patches.dtype)[..., None]
    total = (patches * weights).sum(dim=0)
    return total / weights.sum(dim=0).clamp_min(1.0)


def _scored_patches(labels: torch.Tensor | None, counts: torch.Tensor) -> torch.Tensor:
    """Patch labels with IGNORE_LABEL where the patch had no visible token."""
    if labels is None:
        raise ValueError("the task has no patch labels")
    if labels.shape != counts.shape:
        raise ValueError(
            f"patch labels {tuple(labels.shape)} do not match the patch grid "
            f"{tuple(counts.shape)} of the embeddings"
        )
    return torch.where(counts > 0, labels, torch.full_like(labels, IGNORE_LABEL))


# -- checkpoints -------------------------------------------------------------------------------


def load_model_weights(model: nn.Module, checkpoint_dir: str | os.PathLike[str]) -> int:
    """Loads the model part of a checkpoint directory (plain or sharded, read whole in this
    process) into `model`; returns the checkpoint's step."""
    path = Path(checkpoint_dir)
    meta = checkpoint_lib.read_meta(path)
    if MODEL_PART not in meta.get("parts", []):
        raise ValueError(f"{path} has no {MODEL_PART} part (parts: {meta.get('parts')})")
    # checkpoint_lib.load: weights only, sizes checked, errors that name the file.
    model.load_state_dict(checkpoint_lib.load(path, parts=[MODEL_PART])[MODEL_PART])
    return int(meta["step"])


def encoder_of(model: nn.Module) -> Encoder:
    """The online encoder of a LatentMIM-like model (or the model, if it is an Encoder)."""
    if isinstance(model, Encoder):
        return model
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, Encoder):
        raise TypeError(f"{type(model).__name__} has no `encoder` Encoder to evaluate")
    return encoder


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path:
    """The newest complete `checkpoints/step_<N>/` of a run folder."""
    found = checkpoint_lib.latest_complete(Path(run_dir) / "checkpoints")
    if found is None:
        raise FileNotFoundError(f"{run_dir} has no complete checkpoint under checkpoints/")
    return found


@dataclasses.dataclass
class EvaluationResult:
    """Scores of one checkpoint (step 0 / checkpoint None: the untrained model)."""

    step: int
    checkpoint: str | None
    metrics: dict[str, float]
    seconds: float


def evaluate_checkpoint(
    model_config: Any,
    checkpoint_dir: str | os.PathLike[str] | None,
    config: EvaluatorConfig | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None,
    wandb_mode: str = "disabled",
    evaluator: Evaluator | None = None,
) -> EvaluationResult:
    """Builds the model, loads the checkpoint (None: keeps the initialisation) and scores it.

    Args:
        model_config: the run's model config (e.g. its LatentMIMConfig); `build()` is called.
        checkpoint_dir: a `step_<N>` directory, or None for the randomly initialised model
            (seed torch first for a reproducible one).
        config: what to evaluate (default: EvaluatorConfig()).
        run_dir: when given, the scores are recorded in the run folder (`record_results`).
        device: where the encoder runs (default CPU).
        wandb_mode: "disabled", or a W&B mode for `log_to_wandb` (needs run_dir).
        evaluator: a built evaluator to reuse (its loaded task data) instead of `config`.
    """
    started = time.perf_counter()
    model = model_config.build()
    step = 0 if checkpoint_dir is None else load_model_weights(model, checkpoint_dir)
    encoder = encoder_of(model).to(device or "cpu")
    evaluator = evaluator or (config or EvaluatorConfig()).build()
    metrics = evaluator.evaluate(encoder)
    result = EvaluationResult(
        step=step,
        checkpoint=None if checkpoint_dir is None else str(checkpoint_dir),
        metrics=metrics,
        seconds=time.perf_counter() - started,
    )
    if run_dir is not None:
        record_results(run_dir, result)
        if wandb_mode != "disabled":
            log_to_wandb(run_dir, result.step, result.metrics, wandb_mode)
    return result


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def record_results(run_dir: str | os.PathLike[str], result: EvaluationResult) -> Path:
    """Writes `eval/downstream_step_<N>.json` and appends the scores to metrics.jsonl, holding
    the run folder's lock (raises RunLockedError while a training process owns the folder)."""
    directory = RunDirectory(Path(run_dir))
    with directory.lock():
        out = directory.path / "eval" / f"downstream_step_{result.step}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(out, json.dumps(dataclasses.asdict(result), indent=1) + "\n")
        with open(directory.metrics_path, "a") as handle:
            handle.write(json.dumps({"step": result.step, **result.metrics}) + "\n")
    return out


def log_to_wandb(
    run_dir: str | os.PathLike[str], step: int, metrics: Mapping[str, float], mode: str = "auto"
) -> str:
    """Logs offline-evaluation scores into the run's W&B run (same id, resumed).

    The trainer's W&B step has moved past `step` by the time a checkpoint is evaluated, so
    the scores are logged against their own x-axis, `eval/step`, which W&B accepts at any
    time. Returns the W&B run id.
    """
    import wandb  # heavy import: only when W&B is used

    from models.train.callbacks.wandb_logger import resolve_mode

    run_path = Path(run_dir)
    id_file = run_path / "wandb" / "run_id"
    run_id = id_file.read_text().strip() if id_file.exists() else None
    run = wandb.init(
        project=run_path.parent.name,
        name=run_path.name,
        id=run_id,
        resume="allow",
        mode=resolve_mode(mode),
        dir=str(run_path),
    )
    run.define_metric(f"{METRIC_PREFIX}/step")
    run.define_metric(f"{METRIC_PREFIX}/*", step_metric=f"{METRIC_PREFIX}/step")
    run.log({**metrics, f"{METRIC_PREFIX}/step": step})
    run_id = run.id
    run.finish()
    if not id_file.exists():
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run_id + "\n")
    return run_id
