"""Tiny: the v1 recipe at tiny_shallow_decoder size (6.20M encoder + 1.86M decoder).

Hypothesis: none; a size recipe between nano and base for cheap ablations.
Change: model size tiny_shallow_decoder (192 wide, 12 + 4 blocks, 3 heads); the rest is base's.
The released tiny checkpoint used lr 2e-4 (a separate run: --train_module.optimizer.lr=2e-4).
Launch:
    ./tools/bazel run //experiments:tiny -- launch tiny <cluster> --launch.num_gpus=8 \\
        --trainer.callbacks.wandb.project=YYYY_MM_DD_<study>
"""

from experiments import base as baseline  # noqa: F401 (what this changes: builders, diff)
from experiments.framework import CommonComponents, builders_in, main
from experiments.script import v1_model_config
from models.latent_mim.latent_mim import LatentMIMConfig

CHANGES = ("model",)


def build_model_config(common: CommonComponents) -> LatentMIMConfig:
    return v1_model_config(common, "tiny_shallow_decoder")


if __name__ == "__main__":
    main(**builders_in(globals()))
