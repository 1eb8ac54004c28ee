"""The shared builders of every experiment: OlmoEarth's v1 pretraining recipe.

Numbers are the reference's `scripts/official/v1/script.py` (notes: reference-olmoearth.md
section 4.2). A variant imports these and overrides only the builder(s) its hypothesis
changes; experiments/base.py adds the base model.

    optimizer   AdamW lr 1e-4, weight decay 0.02, betas (0.9, 0.999); clip grad norm 1.0
                (the size recipes take their released checkpoints' lr/wd: nano 1e-3/0.002,
                tiny 2e-4/0.02, large 1e-4/0.002; notes section 4.2)
    schedule    linear warmup 8000 steps, cosine to 0.1 x lr at the last step
    batch       global 512 instances, microbatch 32 per rank (16 per step on 1 rank)
    duration    300 epochs: 2,224 steps/epoch on the 1,138,828-sample dataset = 667,200
                steps, the released base checkpoint's step
    data        token budget 2250 per instance; patch size drawn from 1..8 and patches per
                side from 1..12 per step; loader seed 3622; 12 workers, prefetch 2
    masking     modality_cross_random, 50% encoded / 50% decoded, maps decode-only
    losses      modality patch discrimination (tau 0.1) + InfoNCE (tau 0.1, weight 0.1)
    seeds       3622 for the data loader, 12536 for the model
    checkpoints every 250 steps (newest kept) and permanently every 5000
    evaluation  models/eval's kNN and probes on held-out land-cover tiles at every permanent
                checkpoint and after the last step (the reference: its downstream tasks
                every epoch); `--trainer.callbacks.evaluator.enabled=false` turns it off
"""

from __future__ import annotations

import dataclasses
from typing import Any

from experiments.framework import (
    CommonComponents,
    VisualizeSettings,
    clusters,
    data,
    naming,
)
from launcher.settings import LaunchSettings
from models.data.dataset import DatasetConfig
from models.data.masked_loader import MaskedDataLoaderConfig, v1_masking
from models.eval.callback import EvaluatorCallbackConfig
from models.eval.evaluator import EvaluatorConfig
from models.latent_mim import sizes
from models.latent_mim.latent_mim import LatentMIMConfig
from models.latent_mim.v1_1 import LatentMIMV11Config
from models.latent_mim.v1_2 import LatentMIMV12Config
from models.losses.info_nce import InfoNCELossConfig
from models.losses.patch_discrimination import (
    MaskedNegativesPatchDiscriminationLossConfig,
    ModalityPatchDiscriminationLossConfig,
)
from models.masking.with_decode import RandomTimeWithDecodeMaskingConfig
from models.modalities import modalities
from models.train.callbacks.checkpointer import CheckpointerConfig
from models.train.callbacks.defaults import default_callbacks
from models.train.optim import AdamWConfig, CosineWithWarmupConfig
from models.train.rng import DEFAULT_MODEL_SEED
from models.train.run_dir import RunDirConfig
from models.train.train_module import TrainModuleConfig
from models.train.trainer import Duration, TrainerConfig

GLOBAL_BATCH_SIZE = 512
MICROBATCH_SIZE = 32
DATA_LOADER_SEED = 3622
TOKEN_BUDGET = 2250
PERMANENT_CHECKPOINT_INTERVAL = 5000


def build_common_components(
    experiment: str, subcommand: str, run_name: str, cluster: str
) -> CommonComponents:
    """Identity, cluster roots and launch resources of a run.

    The default W&B project is today's date plus the experiment name; a study that groups
    several variants passes one shared project with --trainer.callbacks.wandb.project.
    """
    spec = clusters.resolve_cluster(cluster)
    return CommonComponents(
        experiment=experiment,
        subcommand=subcommand,
        run_name=run_name,
        cluster=cluster,
        run_root=spec.run_root,
        data_dir=spec.data_dir,
        wandb_project=naming.dated_project(experiment),
        training_modalities=modalities.TRAINING_MODALITIES,
        # The reference's default is 1 GPU; its base ran with --launch.num_gpus=8 (512 / 8 =
        # 64 per rank = 2 microbatches), which every launch command here passes.
        launch=LaunchSettings(num_nodes=1, num_gpus=1, priority="normal"),
    )


def v1_model_config(common: CommonComponents, size: str, **kwargs) -> LatentMIMConfig:
    """The v1 model at `size` (models/latent_mim/sizes.py) over the run's modalities."""
    return LatentMIMConfig.from_size(size, modalities=common.training_modalities, **kwargs)


def build_dataset_config(common: CommonComponents) -> DatasetConfig:
    """The cluster's H5 dataset, or the embedded synthetic one (generated on first train)."""
    h5_dir = common.data_dir or str(data.default_dataset_dir())
    return DatasetConfig(h5_dir=h5_dir, training_modalities=common.training_modalities)


def build_dataloader_config(common: CommonComponents) -> MaskedDataLoaderConfig:
    # 12 workers x prefetch 2 kept 8 H100s fed in the reference; a laptop has 2 cores, and
    # one worker overlaps reading and masking with the step without starving it.
    workers = 1 if common.is_local else 12
    return MaskedDataLoaderConfig(
        global_batch_size=GLOBAL_BATCH_SIZE,
        num_workers=workers,
        prefetch_factor=2,
        seed=DATA_LOADER_SEED,
        # Every patch size the v1 model supports, from its size table's module.
        min_patch_size=sizes.V1_MIN_PATCH_SIZE,
        max_patch_size=sizes.V1_MAX_PATCH_SIZE,
        patches_per_side=tuple(range(1, 13)),
        token_budget=TOKEN_BUDGET,
        masking=v1_masking(),
    )


def build_train_module_config(common: CommonComponents) -> TrainModuleConfig:
    return TrainModuleConfig(
        optimizer=AdamWConfig(lr=1e-4, weight_decay=0.02, betas=(0.9, 0.999), eps=1e-8),
        scheduler=CosineWithWarmupConfig(warmup_steps=8000, alpha_f=0.1),
        microbatch_size=MICROBATCH_SIZE,
        patch_loss=ModalityPatchDiscriminationLossConfig(tau=0.1),
        contrastive=InfoNCELossConfig(tau=0.1, weight=0.1),
        max_grad_norm=1.0,
    )


def with_adamw(
    config: TrainModuleConfig, *, lr: float, wd: float, fused: bool | None = None
) -> TrainModuleConfig:
    """`config` with AdamW's peak lr and weight decay replaced (a size recipe's released
    values), and its kernel where `fused` is given; betas and eps stay the recipe's."""
    optimizer = dataclasses.replace(config.optimizer, lr=lr, weight_decay=wd)
    if fused is not None:
        optimizer = dataclasses.replace(optimizer, fused=fused)
    return dataclasses.replace(config, optimizer=optimizer)


def build_trainer_config(common: CommonComponents) -> TrainerConfig:
    return TrainerConfig(
        run=RunDirConfig(project=common.wandb_project, name=common.run_name, root=common.run_root),
        max_duration=Duration.epochs(300),
        seed=DEFAULT_MODEL_SEED,
        callbacks={
            **default_callbacks(),
            "checkpointer": CheckpointerConfig(
                interval=250, keep_last=1, permanent_interval=PERMANENT_CHECKPOINT_INTERVAL
            ),
            # Every variant is scored the same way, so `tools/compare` can set their downstream
            # scores side by side. A nano evaluation takes about 20 s on 2 CPU cores (held-out
            # tiles generated once per machine); the quickstart gets one, after its last step.
            "evaluator": EvaluatorCallbackConfig(
                evaluator=EvaluatorConfig(),
                interval=PERMANENT_CHECKPOINT_INTERVAL,
                at_end=True,
            ),
        },
    )


def build_visualize_config(common: CommonComponents) -> VisualizeSettings:
    return VisualizeSettings(num_samples=4, patch_size=4, patches_per_side=8, seed=0)


# -- the v1.1 and v1.2 recipes ---------------------------------------------------------------
# The reference's scripts/official/v1_1/base.py and v1_2/base.py (notes: reference-olmoearth.md
# section 4.3) change v1's recipe in these places, each a builder below; everything else
# (optimizer, schedule, global batch, token budget, patch sizes, duration, seeds) is v1's:
#   model       v1.1: one band set for S2 and for Landsat, a per-pixel MLP (hidden 64; 12 at
#               nano) before the patch projection, band dropout U(0, 0.2) on S2 and Landsat
#               (models/latent_mim/v1_1.py); v1.2 adds rope_3d_mixed in encoder and decoder
#               (models/latent_mim/v1_2.py)
#   masking     random_time_with_decode, 50% encoded / 50% decoded, random_ratio 0.5, over
#               the model's single-band-set tokens
#   losses      masked-negatives patch discrimination (tau 0.1, same-target threshold 0.999
#               on the six maps) + InfoNCE weight 0.05
#   batch       microbatch 64 per rank; 16 loader workers, prefetch 4
# The token budget keeps counting v1's band sets (S2 3, Landsat 2) as the reference's v1.1
# loader does (it passes no tokenization), so the dataset's tokenization stays the default.
V1_1_MICROBATCH_SIZE = 64
V1_1_INFO_NCE_WEIGHT = 0.05


def v1_1_model_config(common: CommonComponents, size: str, **kwargs) -> LatentMIMConfig:
    """The v1.1 model (LatentMIMV11Config) at `size` over the run's modalities."""
    return LatentMIMV11Config.from_size(size, modalities=common.training_modalities, **kwargs)


def v1_2_model_config(common: CommonComponents, size: str, **kwargs) -> LatentMIMConfig:
    """The v1.2 model (LatentMIMV12Config: v1.1 + rope_3d_mixed) at `size`."""
    return LatentMIMV12Config.from_size(size, modalities=common.training_modalities, **kwargs)


def v1_1_masking() -> RandomTimeWithDecodeMaskingConfig:
    """random_time_with_decode over v1.1's tokens (one band set for S2 and Landsat)."""
    return RandomTimeWithDecodeMaskingConfig(
        encode_ratio=0.5,
        decode_ratio=0.5,
        random_ratio=0.5,
        tokenization=modalities.SINGLE_BANDSET_TOKENIZATION,
    )


def v1_1_dataloader_config(common: CommonComponents) -> MaskedDataLoaderConfig:
    """v1's loader with v1.1's masking and, off `local`, 16 workers prefetching 4 batches."""
    config = build_dataloader_config(common)
    workers = config.num_workers if common.is_local else 16
    return dataclasses.replace(
        config, num_workers=workers, prefetch_factor=4, masking=v1_1_masking()
    )


def v1_1_train_module_config(common: CommonComponents) -> TrainModuleConfig:
    """v1's step with v1.1's losses and microbatch of 64."""
    config = build_train_module_config(common)
    return dataclasses.replace(
        config,
        microbatch_size=V1_1_MICROBATCH_SIZE,
        patch_loss=MaskedNegativesPatchDiscriminationLossConfig(
            tau=0.1, same_target_threshold=0.999
        ),
        contrastive=dataclasses.replace(config.contrastive, weight=V1_1_INFO_NCE_WEIGHT),
    )


# -- CPU quickstart ------------------------------------------------------------------------
# The nano recipe on the `local` cluster shrinks its step so that
# `train nano_quickstart local --trainer.max_steps=100` ends in minutes on a 2-core laptop:
#   global batch 512 -> 8 (microbatch 32 -> 8): a 512-instance step takes minutes on CPU;
#   token budget 2250 -> 300 per instance: 8 x 2250-token instances (~13k tokens a step)
#       took 40-65 s per step on the shared 2-core machine, 8 x 300 (~1.5k tokens) 0.3
#       CPU-seconds with one intra-op thread (training.cpu_threads_for);
#   warmup 8000 -> 20 steps: with 8000, a 100-step run never gets past lr 1.25e-6.
# Measured: 100 steps in 112 s (47 CPU-seconds) with the machine at load average 12.
# base and every ablation keep the reference numbers on every cluster (experiment_test.py).
CPU_QUICKSTART_BATCH = 8
CPU_QUICKSTART_TOKEN_BUDGET = 300
CPU_QUICKSTART_WARMUP_STEPS = 20


def for_local_cpu(common: CommonComponents, config: Any) -> Any:
    """`config` (data loader or train module) shrunk for a CPU quickstart on `local`."""
    if not common.is_local:
        return config
    if isinstance(config, MaskedDataLoaderConfig):
        return dataclasses.replace(
            config,
            global_batch_size=CPU_QUICKSTART_BATCH,
            token_budget=CPU_QUICKSTART_TOKEN_BUDGET,
        )
    if isinstance(config, TrainModuleConfig):
        return dataclasses.replace(
            config,
            microbatch_size=CPU_QUICKSTART_BATCH,
            scheduler=dataclasses.replace(
                config.scheduler, warmup_steps=CPU_QUICKSTART_WARMUP_STEPS
            ),
        )
    raise TypeError(f"for_local_cpu does not know {type(config).__name__}")
