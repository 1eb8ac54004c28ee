"""Tiny: the v1 recipe at tiny_shallow_decoder size (6.20M encoder + 1.86M decoder).

Hypothesis: none; a size recipe between nano and base for cheap ablations.
Change: model size tiny_shallow_decoder (192 wide, 12 + 4 blocks, 3 heads) and the released
tiny checkpoint's lr 2e-4 (weight decay 0.02 as base); the rest is base's.
Launch:
    ./tools/bazel run //experiments:tiny -- launch tiny <cluster> --launch.num_gpus=8 \\
        --trainer.callbacks.wandb.project=YYYY_MM_DD_<study>
"""

from experiments import base as baseline  # noqa: F401 (what this changes: builders, diff)
from experiments import script
from experiments.framework import CommonComponents, builders_in, main

CHANGES = ("model", "train_module")


def build_model_config(common: CommonComponents) -> script.LatentMIMConfig:
    return script.v1_model_config(common, "tiny_shallow_decoder")


def build_train_module_config(common: CommonComponents) -> script.TrainModuleConfig:
    return script.with_adamw(script.build_train_module_config(common), lr=2e-4, wd=0.02)


if __name__ == "__main__":
    main(**builders_in(globals()))
