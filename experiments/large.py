"""Large: the v1 recipe at large_shallow_decoder size (307.8M encoder + 52.5M decoder).

Hypothesis: none; a size recipe for the scaling comparison with base.
Change: model size large_shallow_decoder (1024 wide, 24 + 4 blocks, 16 heads) and the released
large checkpoint's weight decay 0.002 (lr 1e-4 as base); the rest is base's.
Launch:
    ./tools/bazel run //experiments:large -- launch large <cluster> --launch.num_gpus=8 \\
        --trainer.callbacks.wandb.project=YYYY_MM_DD_<study>
"""

from experiments import base as baseline  # noqa: F401 (what this changes: builders, diff)
from experiments import script
from experiments.framework import CommonComponents, builders_in, main

CHANGES = ("model", "train_module")


def build_model_config(common: CommonComponents) -> script.LatentMIMConfig:
    return script.v1_model_config(common, "large_shallow_decoder")


def build_train_module_config(common: CommonComponents) -> script.TrainModuleConfig:
    return script.with_adamw(script.build_train_module_config(common), lr=1e-4, wd=0.002)


if __name__ == "__main__":
    main(**builders_in(globals()))
