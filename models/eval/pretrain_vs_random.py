"""Does pretraining help? A nano encoder pretrained on synthetic tiles vs the same at init.

    python -m models.eval.pretrain_vs_random --out /tmp/pvr
    ./tools/bazel run //models/eval:pretrain_vs_random -- --out /tmp/pvr

1. Pretrains the v1 recipe's model at the nano size (models/train/pretrain.py) on the
   embedded synthetic dataset (128 tiles, seed 0) for `--steps` steps (600), with the in-loop
   evaluator (models/eval/callback.py) scoring it every `--eval-every` steps (0: never).
2. Rebuilds the same model from the same seed without training: the random initialisation
   the pretrained run started from.
3. Scores both with the same evaluator on held-out tiles (seed 1): land-cover kNN (k = 20,
   cosine, similarity-weighted votes) per tile and per patch, the linear probe and the
   per-patch probe.
Writes `<out>/pretrain_vs_random.json` and prints a Markdown table of both.

CPU-sized deviations from the recipe (everything else is v1), each for a measured reason:
- global batch `--batch-size` 8 (one microbatch), token budget `--token-budget` 400;
- learning rate `--lr` 1e-3 with `--warmup` 30 steps: the recipe's 1e-4 after 8000 warmup
  steps moves nothing in a few hundred steps;
- patch size `--min-patch-size` 8 (the recipe draws 1..8): under a 400-token budget a
  patch-1 window is 3 x 3 pixels, and steps at P = 8 are ~0.5 s instead of several;
- `--infonce-weight` 0 (the base_no_contrastive experiment; v1 uses 0.1): in a batch of 8
  the two views of a sample share their months, so InfoNCE is solved by the month encoding
  alone, and with it on, 300-600 steps left the land-cover scores at or below random init.
Measured with these defaults (600 steps, 320-370 s on 2 cores): per-patch land-cover kNN
0.21 at random init -> 0.29 pretrained (seed 12536) and 0.21 -> 0.33 (`--seed 2`); tile kNN
stays at chance (0.25 -> 0.23, 0.27 -> 0.24). Why the tile level does not move: patch
discrimination takes its negatives from the same sample, so it rewards what tells a tile's
patches apart (their land cover), not what tells tiles apart; that is InfoNCE's part, and at
batch 8 InfoNCE is solved by the month encoding (see above).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from models.data import synthetic
from models.data.dataset import DatasetConfig
from models.data.loader import DataLoaderConfig
from models.eval.callback import EvaluatorCallbackConfig
from models.eval.evaluator import EvaluatorConfig, evaluate_checkpoint, latest_checkpoint
from models.eval.landcover import LandCoverTaskConfig
from models.latent_mim.latent_mim import LatentMIMConfig
from models.losses.info_nce import InfoNCELossConfig
from models.masking.modality_cross import ModalityCrossRandomMaskingConfig
from models.train import pretrain, rng
from models.train.callbacks.checkpointer import CheckpointerConfig
from models.train.callbacks.wandb_logger import WandbConfig
from models.train.optim import AdamWConfig, CosineWithWarmupConfig
from models.train.run_dir import RunDirConfig
from models.train.train_module import TrainModuleConfig
from models.train.trainer import Duration, TrainerConfig

logger = logging.getLogger(__name__)

MODEL_SEED = 12536


def pretrain_config(args: argparse.Namespace, data_dir: Path) -> pretrain.PretrainConfig:
    """The nano v1 recipe with the CPU-sized batch, budget and schedule of the docstring."""
    return pretrain.PretrainConfig(
        model=LatentMIMConfig.from_size("nano"),
        dataset=DatasetConfig(h5_dir=str(data_dir)),
        data_loader=DataLoaderConfig(
            global_batch_size=args.batch_size,
            num_workers=args.workers,
            seed=3622,
            min_patch_size=args.min_patch_size,
            token_budget=args.token_budget,
        ),
        masking=ModalityCrossRandomMaskingConfig(
            encode_ratio=0.5,
            decode_ratio=0.5,
            allow_encoding_decoding_same_bandset=True,
            min_encoded_bandsets=2,
        ),
        train_module=TrainModuleConfig(
            optimizer=AdamWConfig(lr=args.lr, weight_decay=0.02),
            scheduler=CosineWithWarmupConfig(warmup_steps=args.warmup, alpha_f=0.1),
            global_batch_size=args.batch_size,
            microbatch_size=args.batch_size,
            contrastive=(
                InfoNCELossConfig(tau=0.1, weight=args.infonce_weight)
                if args.infonce_weight > 0
                else None
            ),
        ),
        trainer=TrainerConfig(
            run=RunDirConfig(project="pretrain_vs_random", name=args.name, root=str(args.out)),
            max_duration=Duration.steps(args.steps),
            seed=args.seed,
            log_interval=args.log_every,
            checkpointer=CheckpointerConfig(
                interval=args.steps, keep_last=1, permanent_interval=None
            ),
            wandb=WandbConfig(enabled=args.wandb, mode="offline"),
        ),
    )


def evaluator_config(args: argparse.Namespace) -> EvaluatorConfig:
    return EvaluatorConfig(
        tasks=(LandCoverTaskConfig(num_samples=args.eval_samples),), batch_size=args.eval_batch
    )


def markdown_table(random: dict[str, float], trained: dict[str, float]) -> str:
    lines = [
        "| metric | random init | pretrained | delta |",
        "|---|---:|---:|---:|",
    ]
    for key in sorted(trained):
        if key.endswith("/seconds") or key not in random:
            continue
        delta = trained[key] - random[key]
        lines.append(f"| {key} | {random[key]:.4f} | {trained[key]:.4f} | {delta:+.4f} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="run root and report folder")
    parser.add_argument("--name", default="nano_pretrained")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument(
        "--seed", type=int, default=MODEL_SEED, help="model initialisation and training seed"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--token-budget", type=int, default=400)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--min-patch-size", type=int, default=8, help="smallest patch size drawn (recipe: 1)"
    )
    parser.add_argument(
        "--infonce-weight",
        type=float,
        default=0.0,
        help="weight of the InfoNCE term (recipe v1: 0.1; 0: patch discrimination only, "
        "the base_no_contrastive experiment)",
    )
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--eval-every", type=int, default=300, help="in-loop interval; 0: never")
    parser.add_argument("--eval-samples", type=int, default=256, help="held-out tiles")
    parser.add_argument("--eval-batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--wandb", action="store_true", help="also log to W&B (offline)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    data_dir = synthetic.ensure_default_dataset()
    config = pretrain_config(args, data_dir)
    evaluation = evaluator_config(args)
    evaluator = evaluation.build()

    callbacks = []
    if args.eval_every:
        if args.eval_every % args.log_every:
            raise SystemExit("--eval-every must be a multiple of --log-every")
        in_loop = EvaluatorCallbackConfig(evaluation, interval=args.eval_every, at_end=False)
        callbacks.append(in_loop.build())
        callbacks[0].evaluator = evaluator  # share the loaded task data with the comparison
    started = time.perf_counter()
    trainer = pretrain.train(config, callbacks=callbacks)
    train_seconds = time.perf_counter() - started

    rng.seed_everything(args.seed)  # the initialisation the pretrained run started from
    random = evaluate_checkpoint(config.model, None, evaluator=evaluator)
    trained = evaluate_checkpoint(
        config.model, latest_checkpoint(trainer.run_dir.path), evaluator=evaluator
    )
    report = {
        "steps": trainer.step,
        "train_seconds": train_seconds,
        "run_dir": str(trainer.run_dir.path),
        "random_init": random.metrics,
        "pretrained": trained.metrics,
        "in_loop": [
            {"step": step, **scores} for callback in callbacks for step, scores in callback.history
        ],
        "settings": vars(args) | {"out": str(args.out)},
    }
    (args.out / "pretrain_vs_random.json").write_text(json.dumps(report, indent=1) + "\n")
    print(markdown_table(random.metrics, trained.metrics))
    print(f"trained {trainer.step} steps in {train_seconds:.0f} s; report in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
