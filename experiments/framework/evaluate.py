"""`evaluate`: score a checkpoint of a run on fixed held-out inputs.

Reported (and written to `<run>/eval/step_<N>.json`):
    loss, patch_disc (per modality too), infonce   the training objective on EVAL_SAMPLES
        fixed instances at patch size 4 and 8 x 8 patches, masked with a fixed seed, so
        numbers are comparable across checkpoints and across variants;
    embedding_std, effective_rank                  of the pooled embeddings of the unmasked
        instances: a collapsed encoder has std near 0 and rank near 1.
Then the downstream evaluation of models/eval (`downstream`): kNN, linear probe and
segmentation probe of the frozen encoder on held-out synthetic land-cover tiles (the run's
`trainer.callbacks.evaluator` config, so the scores are those its in-loop evaluation would
give; the default EvaluatorConfig for a run without one; about 20 s for nano on 2 cores,
the tiles generated once), recorded by models/eval in `<run>/eval/downstream_step_<N>.json`
and in metrics.jsonl. The kNN score is models/eval's alone (`eval/<task>/knn_accuracy`,
models/eval/knn.py): one on the objective's 64 instances would score tiles the encoder trained
on, in steps of 1/64, and disagree with it under the same name.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import torch

from experiments.framework import inspection
from experiments.framework.errors import CommandError
from experiments.framework.experiment_config import ExperimentConfig

if TYPE_CHECKING:
    from experiments.framework.resolution import Invocation

EVAL_SAMPLES = 64
EVAL_BATCH = 8
EVAL_PATCH_SIZE = 4
EVAL_PATCHES_PER_SIDE = 8
EVAL_SEED = 20251121


def effective_rank(embeddings: torch.Tensor) -> float:
    """exp(entropy of the normalised singular values) of centred [N, D] embeddings."""
    centred = embeddings - embeddings.mean(dim=0, keepdim=True)
    singular = torch.linalg.svdvals(centred.double())
    total = singular.sum()
    if total <= 0:
        return 1.0
    p = singular / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def evaluate(config: ExperimentConfig, checkpoint: Path | None) -> dict[str, Any]:
    """The metrics of the module docstring for the model at `checkpoint`."""
    model, step = inspection.load_model(config, checkpoint)
    dataset = inspection.open_dataset(config)
    patch_loss = config.train_module.patch_loss.build()
    contrastive = config.train_module.contrastive
    contrastive = contrastive.build() if contrastive is not None else None
    indices = inspection.pick_indices(len(dataset), EVAL_SAMPLES, EVAL_SEED)
    sums: Counter[str] = Counter()
    batches = 0
    pooled = []
    for start in range(0, len(indices), EVAL_BATCH):
        chunk = indices[start : start + EVAL_BATCH]
        inputs = inspection.FixedInputs(chunk, EVAL_PATCH_SIZE, EVAL_PATCHES_PER_SIDE, EVAL_SEED)
        batch = inspection.fixed_batch(config, dataset, inputs)
        size = batch.patch_size
        outputs = [model(view, size) for view in (batch.view_a, batch.view_b)]
        for view, out in zip((batch.view_a, batch.view_b), outputs, strict=True):
            target = model.target_tokens(view, size)
            for name, value in patch_loss.modality_losses(out.decoded, target).items():
                sums[f"patch_disc/{name}"] += float(value) / 2
            sums["patch_disc"] += float(patch_loss(out.decoded, target)) / 2
        if contrastive is not None and len(chunk) > 1:
            sums["infonce"] += float(contrastive(outputs[0].pooled, outputs[1].pooled))
        pooled.append(model.encoder(batch.view_a.unmask(), size).pooled)
        batches += 1
    metrics: dict[str, Any] = {key: value / batches for key, value in sums.items()}
    metrics["loss"] = metrics["patch_disc"] + metrics.get("infonce", 0.0)
    embeddings = torch.cat(pooled)
    metrics["embedding_std"] = float(embeddings.std(dim=0).mean())
    metrics["effective_rank"] = effective_rank(embeddings)
    return {"step": step, "checkpoint": str(checkpoint) if checkpoint else None, **metrics}


def configured_evaluator(config: ExperimentConfig) -> Any:
    """The EvaluatorConfig of the run's in-loop evaluator callback, or None without one."""
    callbacks = getattr(config.trainer, "callbacks", None) or {}
    return getattr(callbacks.get("evaluator"), "evaluator", None)


def downstream(
    config: ExperimentConfig, checkpoint: Path | None, evaluator: Any = None
) -> dict[str, float]:
    """models/eval's downstream scores of the checkpoint, recorded in the run folder.

    Args:
        evaluator: a models.eval EvaluatorConfig (default: the run's in-loop evaluator
            config, else models/eval's default tasks and methods).
    """
    from models.eval.evaluator import evaluate_checkpoint

    if evaluator is None:
        evaluator = configured_evaluator(config)
    torch.manual_seed(config.seed)  # the untrained model (no checkpoint) is reproducible
    result = evaluate_checkpoint(
        config.model, checkpoint, evaluator, run_dir=inspection.run_dir(config)
    )
    return result.metrics


def evaluate_command(invocation: Invocation, stdout: TextIO, stderr: TextIO) -> int:
    config = invocation.config
    try:
        checkpoint = inspection.require_checkpoint(
            config, config.visualize.checkpoint, invocation.untrained, "evaluate"
        )
    except inspection.NoCheckpointError as error:
        raise CommandError(str(error), exit_code=2) from error
    if checkpoint is None:
        print(
            f"warning: {inspection.run_dir(config)} has no checkpoint; evaluating the "
            "untrained model (a baseline for the trained one)",
            file=stderr,
        )
    result = evaluate(config, checkpoint)
    out_dir = inspection.run_dir(config) / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    out_path = out_dir / f"step_{result['step']}.json"
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{config.experiment} run {config.run_name} at step {result['step']}:", file=stdout)
    for key, value in result.items():
        if isinstance(value, float):
            print(f"  {key:<36} {value:.4f}", file=stdout)
    print(f"written to {out_path}", file=stdout)
    print("downstream (models/eval: kNN and probes on held-out land-cover tiles):", file=stdout)
    for key, value in downstream(config, checkpoint).items():
        print(f"  {key:<36} {value:.4f}", file=stdout)
    step = result["step"]
    print(
        f"recorded in {inspection.run_dir(config) / 'eval'}/downstream_step_{step}.json",
        file=stdout,
    )
    return 0
