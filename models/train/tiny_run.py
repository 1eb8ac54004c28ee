"""Tiny CPU pretraining runs on synthetic data: the tests' workload and a smoke check.

    python -m models.train.tiny_run --data /tmp/tiny --run-root /tmp/runs --name smoke \
        --steps 30
    python -m torch.distributed.run --nproc_per_node 2 -m models.train.tiny_run ...

The tiny setup: 16 synthetic samples of 16 x 16 px and 3 monthly steps; Sentinel-2,
Sentinel-1 and the WorldCover map (decode-only); patch size 2 on 4 x 4 patch windows;
global batch 4 in microbatches of 2; an encoder and predictor of width 32 and depth 1
(`--size nano` trains the reference nano instead). A step takes about 0.06 s on 2 cores.

`--parallelism fsdp|hsdp` (with `--shard-degree` for hsdp) shards the model under torchrun
instead of DDP (train_module.parallelism); models/train/fsdp_test compares them.

`--merge-ranks R` runs one process on batches that concatenate what ranks 0..R-1 of an
R-rank run would read (rank r's samples become microbatch r), so its losses must equal an
R-process torchrun run of the same config: the data-parallel equivalence check.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from models.data.collate import Batch
from models.data.dataset import DatasetConfig
from models.data.loader import DataLoaderConfig, EarthDataLoader
from models.data.synthetic import SyntheticEarthConfig, write_synthetic_dataset
from models.latent_mim.latent_mim import LatentMIMConfig
from models.latent_mim.sizes import MODEL_SIZES, ModelSize
from models.masking.masking import masking_config_from_name
from models.modalities.samples import MaskedSample
from models.train import distributed, pretrain, rng
from models.train.callbacks.callback import Callback, Metrics
from models.train.callbacks.checkpointer import CheckpointerConfig
from models.train.callbacks.defaults import default_callbacks
from models.train.callbacks.progress import ProgressConfig
from models.train.callbacks.wandb_logger import WandbConfig
from models.train.optim import AdamWConfig, CosineWithWarmupConfig
from models.train.parallel import PARALLELISM_CHOICES
from models.train.run_dir import RunDirConfig
from models.train.train_module import TrainModuleConfig
from models.train.trainer import Duration, Trainer, TrainerConfig

TINY_MODALITIES = ("sentinel2_l2a", "sentinel1", "worldcover")
TINY_SIZE = ModelSize(32, 1, 2, 32, 1, 2)
TINY_IMAGE_SIZE = 16
TINY_TIMESTEPS = 3
TINY_PATCH_SIZE = 2


def write_tiny_dataset(out: Path, num_samples: int = 16, seed: int = 0) -> Path:
    """Synthetic samples of 16 x 16 px and 3 steps; returns the sample directory."""
    config = SyntheticEarthConfig(size=TINY_IMAGE_SIZE, timesteps=TINY_TIMESTEPS)
    return write_synthetic_dataset(out, num_samples, seed, config)


def tiny_config(
    data_dir: Path,
    run_root: Path,
    name: str,
    steps: int,
    *,
    size: str | ModelSize = TINY_SIZE,
    global_batch_size: int = 4,
    microbatch_size: int = 2,
    lr: float = 3e-3,
    warmup_steps: int = 3,
    seed: int = 0,
    checkpoint_interval: int = 1000,
    keep_last: int = 1,
    log_interval: int = 1,
    wandb: bool = False,
    num_workers: int = 0,
    drop_path: float = 0.0,
    parallelism: str = "ddp",
    shard_degree: int | None = None,
) -> pretrain.PretrainConfig:
    """The tiny pretraining config (module docstring).

    Drop path defaults to 0 (not the recipe's 0.1): it draws from each rank's own torch
    generator, so with it an R-rank run cannot match a one-process run.
    """
    model = LatentMIMConfig.from_size(size, modalities=TINY_MODALITIES)
    model = dataclasses.replace(
        model,
        encoder=dataclasses.replace(
            model.encoder, max_patch_size=TINY_PATCH_SIZE, drop_path=drop_path
        ),
        decoder=dataclasses.replace(model.decoder, max_patch_size=TINY_PATCH_SIZE),
    )
    return pretrain.PretrainConfig(
        model=model,
        dataset=DatasetConfig(
            h5_dir=str(data_dir),
            training_modalities=TINY_MODALITIES,
            max_timesteps=TINY_TIMESTEPS,
        ),
        data_loader=DataLoaderConfig(
            global_batch_size=global_batch_size,
            seed=seed,
            num_workers=num_workers,
            min_patch_size=TINY_PATCH_SIZE,
            max_patch_size=TINY_PATCH_SIZE,
            patches_per_side=(TINY_IMAGE_SIZE // (2 * TINY_PATCH_SIZE),),
            token_budget=None,
        ),
        masking=masking_config_from_name("random", only_decode_modalities=("worldcover",)),
        train_module=TrainModuleConfig(
            optimizer=AdamWConfig(lr=lr),
            scheduler=CosineWithWarmupConfig(warmup_steps=warmup_steps),
            microbatch_size=microbatch_size,
            parallelism=parallelism,
            shard_degree=shard_degree,
        ),
        trainer=TrainerConfig(
            run=RunDirConfig(project="tiny", name=name, root=str(run_root)),
            max_duration=Duration.steps(steps),
            seed=seed,
            log_interval=log_interval,
            deterministic=True,
            callbacks={
                **default_callbacks(),
                "checkpointer": CheckpointerConfig(
                    interval=checkpoint_interval, keep_last=keep_last, permanent_interval=None
                ),
                "progress": ProgressConfig(enabled=True),
                "wandb": WandbConfig(enabled=wandb),
            },
        ),
    )


def _concat_views(views: Sequence[MaskedSample]) -> MaskedSample:
    first = views[0]
    return MaskedSample(
        data={name: torch.cat([v.data[name] for v in views]) for name in first.data},
        masks={name: torch.cat([v.masks[name] for v in views]) for name in first.masks},
        timestamps=torch.cat([v.timestamps for v in views]),
    )


class RankMergedLoader:
    """One process's loader over the union of what R ranks would read, rank by rank."""

    def __init__(self, loaders: Sequence[EarthDataLoader]) -> None:
        self.loaders = list(loaders)

    def __len__(self) -> int:
        return len(self.loaders[0])

    def __iter__(self) -> Iterator[Batch]:
        for batches in zip(*self.loaders, strict=True):
            patch_sizes = {batch.patch_size for batch in batches}
            if len(patch_sizes) != 1:
                raise RuntimeError(f"ranks disagree on the patch size: {patch_sizes}")
            yield Batch(
                patch_size=batches[0].patch_size,
                view_a=_concat_views([batch.view_a for batch in batches]),
                view_b=_concat_views([batch.view_b for batch in batches]),
            )

    def state_dict(self) -> dict[str, Any]:
        return {"ranks": [loader.state_dict() for loader in self.loaders]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Its own state, or one rank's loader state of an R-rank run's checkpoint: the
        position (epoch, batches consumed) is global, so every rank's loader takes it."""
        rank_states = state["ranks"] if "ranks" in state else [state] * len(self.loaders)
        for loader, rank_state in zip(self.loaders, rank_states, strict=True):
            loader.load_state_dict(rank_state)


def build_rank_merged_trainer(
    config: pretrain.PretrainConfig, ranks: int, callbacks: Sequence[Callback] = ()
) -> Trainer:
    """Like `pretrain.build_trainer` in one process, reading R ranks' shards per step."""
    env = distributed.DistributedEnv()
    rng.seed_everything(config.trainer.seed)
    model = config.model.build()
    dataset = config.dataset.build()
    masking = config.masking.build()
    loader = RankMergedLoader(
        [config.data_loader.build(dataset, masking, rank=r, world_size=ranks) for r in range(ranks)]
    )
    module = config.train_module.build(
        model,
        config.trainer.max_duration.to_steps(len(loader)),
        torch.device("cpu"),
        env,
        global_batch_size=config.data_loader.global_batch_size,
    )
    return config.trainer.build(module, loader, env, callbacks, run_config=config)


class StepDelay(Callback):
    """Sleeps after every step: gives a test time to kill a run between two steps."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def post_step(self, step: int, metrics: Metrics) -> None:
        time.sleep(self.seconds)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (made if empty)")
    parser.add_argument("--run-root", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", default="tiny", help=f"tiny or one of {list(MODEL_SIZES)}")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--global-batch-size", type=int, default=4)
    parser.add_argument("--microbatch-size", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--checkpoint-interval", type=int, default=1000)
    parser.add_argument("--log-interval", type=int, default=1)
    parser.add_argument("--step-delay", type=float, default=0.0, help="seconds to sleep per step")
    parser.add_argument("--merge-ranks", type=int, default=0, help="see the module docstring")
    parser.add_argument("--wandb", action="store_true", help="log to W&B (offline by default)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--drop-path", type=float, default=0.0, help="encoder drop path")
    parser.add_argument(
        "--parallelism",
        default="ddp",
        choices=PARALLELISM_CHOICES,
        help="data parallelism under torchrun (train_module.parallelism)",
    )
    parser.add_argument("--shard-degree", type=int, default=None, help="ranks per hsdp shard group")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # A fixed thread count: reductions split over threads sum in a thread-dependent order.
    torch.set_num_threads(args.threads)
    env = distributed.DistributedEnv.from_environ()
    data_dir = _dataset(args.data, args.samples, env)
    config = tiny_config(
        data_dir,
        args.run_root,
        args.name,
        args.steps,
        size=TINY_SIZE if args.size == "tiny" else args.size,
        global_batch_size=args.global_batch_size,
        microbatch_size=args.microbatch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        checkpoint_interval=args.checkpoint_interval,
        log_interval=args.log_interval,
        wandb=args.wandb,
        drop_path=args.drop_path,
        parallelism=args.parallelism,
        shard_degree=args.shard_degree,
    )
    callbacks = [StepDelay(args.step_delay)] if args.step_delay > 0 else []
    if args.merge_ranks:
        previous = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True)
        try:
            trainer = build_rank_merged_trainer(config, args.merge_ranks, callbacks)
            trainer.fit()
        finally:
            torch.use_deterministic_algorithms(previous)
    else:
        trainer = pretrain.train(config, callbacks, env=env)
    if env.is_main:
        print(f"finished step {trainer.step} in {trainer.run_dir.path}", file=sys.stderr)
    return 0


def _dataset(out: Path, samples: int, env: distributed.DistributedEnv) -> Path:
    """The tiny dataset under `out`, written once (rank 0 of a torchrun job writes first)."""
    found = sorted(out.glob(f"*/*/{samples}"))
    if found:
        return found[0]
    if env.is_main:
        return write_tiny_dataset(out, samples)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = sorted(out.glob(f"*/*/{samples}/sample_metadata.csv"))
        if found:
            return found[0].parent
        time.sleep(0.2)
    raise TimeoutError(f"rank {env.rank}: rank 0 did not write the dataset into {out}")


if __name__ == "__main__":
    sys.exit(main())
