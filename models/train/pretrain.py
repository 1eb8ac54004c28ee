"""The pretraining entry point: `train(config)` builds every piece and runs the trainer.

The experiment framework hands over one config tree (`PretrainConfig`, or any object with
the same six attributes) and calls `train`. The same call works in one plain process and
under torchrun:

    python -m torch.distributed.run --nproc_per_node 8 <binary> ...   # one GPU per rank

Each rank reads RANK / WORLD_SIZE / LOCAL_RANK, joins the process group (NCCL on GPU,
gloo on CPU), seeds every generator with the same seed (so the model is built identically
everywhere), and reads its own shard of each global batch. Rank 0 alone writes the run
folder.

Order of construction matters for exact resume: seed -> model -> dataset, masking and
loader -> train module (optimizer, schedule) -> trainer; resuming then overwrites model,
optimizer, schedule, data position and every generator with the checkpoint's.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Protocol

import torch

from models.config.configurable import Configurable
from models.data.dataset import DatasetConfig
from models.data.loader import DataLoaderConfig
from models.latent_mim.latent_mim import LatentMIMConfig
from models.masking.base import MaskingConfig
from models.train import distributed, rng
from models.train.callbacks.callback import Callback
from models.train.train_module import TrainModuleConfig
from models.train.trainer import Trainer, TrainerConfig

logger = logging.getLogger(__name__)


@dataclasses.dataclass(kw_only=True)
class PretrainConfig(Configurable["Trainer"]):
    """Everything one pretraining run needs.

    Attributes:
        model: the LatentMIM (encoder, predictor, target).
        dataset: the H5 samples and the modalities read from them.
        data_loader: global batch, patch sizes, workers, data seed.
        masking: how each view is masked (applied in the loader workers).
        train_module: optimizer, schedule, microbatching, losses, precision.
        trainer: duration, run folder, logging, checkpoints, seed.
    """

    model: LatentMIMConfig
    dataset: DatasetConfig
    data_loader: DataLoaderConfig
    masking: MaskingConfig
    train_module: TrainModuleConfig
    trainer: TrainerConfig

    def __post_init__(self) -> None:
        check_consistency(self)

    def build(
        self,
        env: distributed.DistributedEnv,
        device: torch.device,
        callbacks: Sequence[Callback] = (),
    ) -> Trainer:
        """The run's trainer, every piece wired (see `build_trainer`)."""
        return build_trainer(self, env, device, callbacks)


class PretrainConfigLike(Protocol):
    model: LatentMIMConfig
    dataset: DatasetConfig
    data_loader: DataLoaderConfig
    masking: MaskingConfig
    train_module: TrainModuleConfig
    trainer: TrainerConfig


def check_consistency(config: PretrainConfigLike) -> None:
    """Fields that several components must agree on (the global batch has one field, the
    loader's, so only its split into microbatches is checked, by the train module)."""
    encoder = config.model.encoder
    loader = config.data_loader
    if loader.max_patch_size > encoder.max_patch_size:
        raise ValueError(
            f"data_loader.max_patch_size ({loader.max_patch_size}) exceeds "
            f"model.encoder.max_patch_size ({encoder.max_patch_size})"
        )
    if loader.min_patch_size < encoder.min_patch_size:
        raise ValueError(
            f"data_loader.min_patch_size ({loader.min_patch_size}) is below "
            f"model.encoder.min_patch_size ({encoder.min_patch_size})"
        )
    unsupported = set(config.dataset.training_modalities) - set(encoder.supported_modalities)
    if unsupported:
        raise ValueError(
            f"dataset.training_modalities {sorted(unsupported)} are not in "
            f"model.encoder.supported_modalities {list(encoder.supported_modalities)}"
        )


def _make_deterministic(device: torch.device) -> None:
    if device.type == "cuda":
        # cuBLAS needs a fixed workspace for deterministic matmuls.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)


def build_trainer(
    config: PretrainConfigLike,
    env: distributed.DistributedEnv,
    device: torch.device,
    callbacks: Sequence[Callback] = (),
) -> Trainer:
    """Every piece of the run, wired together (the process group must already exist)."""
    check_consistency(config)
    rng.seed_everything(config.trainer.seed)
    model = config.model.build()
    dataset = config.dataset.build()
    masking = config.masking.build()
    loader = config.data_loader.build(dataset, masking, rank=env.rank, world_size=env.world_size)
    max_steps = config.trainer.max_duration.to_steps(len(loader))
    module = config.train_module.build(
        model, max_steps, device, env, global_batch_size=config.data_loader.global_batch_size
    )
    return config.trainer.build(module, loader, env, callbacks, run_config=config)


def train(
    config: PretrainConfigLike,
    callbacks: Sequence[Callback] = (),
    env: distributed.DistributedEnv | None = None,
    device: torch.device | None = None,
) -> Trainer:
    """Pretrain as configured; resumes from the run folder's newest checkpoint if any.

    Args:
        config: the run's config tree.
        callbacks: extra callbacks (evaluation, tests).
        env: rank and world size (default: torchrun's environment variables).
        device: default: this rank's GPU when CUDA is available, else the CPU.

    Returns:
        The finished trainer (its `step`, `run_dir`, `train_module`).
    """
    env = env or distributed.DistributedEnv.from_environ()
    device = device or env.device()
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    if config.trainer.deterministic:
        _make_deterministic(device)
    distributed.init_process_group(env, device)
    try:
        trainer = build_trainer(config, env, device, callbacks)
        if env.is_main:
            logger.info(
                "training %s for %d steps into %s (world size %d, device %s)",
                type(config.model).__name__,
                trainer.max_steps,
                trainer.run_dir.path,
                env.world_size,
                device,
            )
        trainer.fit()
        return trainer
    finally:
        distributed.destroy_process_group()
        torch.use_deterministic_algorithms(was_deterministic)
