"""Large: the v1 recipe at large_shallow_decoder size (307.8M encoder + 52.5M decoder).

Hypothesis: none; a size recipe for the scaling comparison with base.
Change: model size large_shallow_decoder (1024 wide, 24 + 4 blocks, 16 heads); rest is base's.
The released large checkpoint used weight decay 0.002 (--train_module.optimizer.weight_decay).
Launch:
    ./tools/bazel run //experiments:large -- launch large <cluster> --launch.num_gpus=8 \\
        --trainer.callbacks.wandb.project=YYYY_MM_DD_<study>
"""

from experiments import base as baseline  # noqa: F401 (what this changes: builders, diff)
from experiments.framework import CommonComponents, builders_in, main
from experiments.script import v1_model_config
from models.latent_mim.latent_mim import LatentMIMConfig

CHANGES = ("model",)


def build_model_config(common: CommonComponents) -> LatentMIMConfig:
    return v1_model_config(common, "large_shallow_decoder")


if __name__ == "__main__":
    main(**builders_in(globals()))
