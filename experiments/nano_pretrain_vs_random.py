"""Nano after 600 CPU steps vs the same encoder at init (plans/nano_pretrain_vs_random.plan.md).

Hypothesis: pretraining lifts held-out per-patch land-cover kNN above the random init.
Change: token budget 400, patch size 8, lr 1e-3, warmup 30, no InfoNCE (why: in the plan).
Launch (~6 min on 2 cores; then `evaluate nano_pretrain_vs_random_init local --untrained`):
    ./tools/bazel run //experiments:nano_pretrain_vs_random -- train nano_pretrain_vs_random \\
        local --trainer.max_steps=600 --trainer.callbacks.evaluator.interval=300
"""

import dataclasses

from experiments import base as baseline  # noqa: F401 (what this is compared to: the diff)
from experiments import nano
from experiments.framework import CommonComponents, builders_in, main
from experiments.nano import build_model_config  # noqa: F401 (nano's model; the rest is base's)

CHANGES = ("model", "data_loader", "train_module")


def build_dataloader_config(common: CommonComponents) -> nano.script.MaskedDataLoaderConfig:
    config = nano.build_dataloader_config(common)
    return dataclasses.replace(config, token_budget=400, min_patch_size=8)


def build_train_module_config(common: CommonComponents) -> nano.script.TrainModuleConfig:
    config = nano.build_train_module_config(common)
    # Weight decay 0.02: the plan's measurements predate nano's released 0.002.
    optimizer = dataclasses.replace(config.optimizer, lr=1e-3, weight_decay=0.02)
    scheduler = dataclasses.replace(config.scheduler, warmup_steps=30)
    return dataclasses.replace(config, optimizer=optimizer, scheduler=scheduler, contrastive=None)


if __name__ == "__main__":
    main(**builders_in(globals()))
