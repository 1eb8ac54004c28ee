"""Nano: the v1 recipe at nano size (1.36M encoder + 0.83M decoder parameters).

Hypothesis: none; a size recipe for quick studies and the CPU quickstart.
Change: model size nano (128 wide, 4 + 4 blocks, 8 heads); the released nano checkpoint's
lr 1e-3 and weight decay 0.002. On the `local` cluster only, a CPU-sized step
(script.for_local_cpu: batch 8, token budget 300, warmup 20); elsewhere base's.
Launch:
    ./tools/bazel run //experiments:nano -- launch nano <cluster> --launch.num_gpus=1 \\
        --trainer.callbacks.wandb.project=YYYY_MM_DD_<study>
Quickstart:
    ./tools/bazel run //experiments:nano -- train nano_quickstart local --trainer.max_steps=100
"""

from experiments import base as baseline  # noqa: F401 (what this changes: builders, diff)
from experiments import script
from experiments.framework import CommonComponents, builders_in, main

CHANGES = ("model", "data_loader", "train_module")


def build_model_config(common: CommonComponents) -> script.LatentMIMConfig:
    return script.v1_model_config(common, "nano")


def build_dataloader_config(common: CommonComponents) -> script.MaskedDataLoaderConfig:
    return script.for_local_cpu(common, script.build_dataloader_config(common))


def build_train_module_config(common: CommonComponents) -> script.TrainModuleConfig:
    released = script.with_adamw(script.build_train_module_config(common), lr=1e-3, wd=0.002)
    return script.for_local_cpu(common, released)


if __name__ == "__main__":
    main(**builders_in(globals()))
