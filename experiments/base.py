"""Base: OlmoEarth v1's base model and recipe, the baseline every ablation compares to.

Hypothesis: none (this is the baseline). Change: none.
Model: base_shallow_decoder (encoder 768 wide x 12 blocks, 12 heads; decoder 768 x 4),
88.95M encoder + 29.54M decoder parameters; the recipe is experiments/script.py.
Cost: the reference trained 667,200 steps of 512 instances on 8 H100s (~147 h).
Launch:
    ./tools/bazel run //experiments:base -- launch base <cluster> --launch.num_gpus=8 \\
        --trainer.callbacks.wandb.project=YYYY_MM_DD_<study>
"""

from experiments.framework import CommonComponents, builders_in, main
from experiments.script import (  # noqa: F401 (the shared builders are part of this experiment)
    build_common_components,
    build_dataloader_config,
    build_dataset_config,
    build_train_module_config,
    build_trainer_config,
    build_visualize_config,
    v1_model_config,
)
from models.latent_mim.latent_mim import LatentMIMConfig

MODEL_SIZE = "base_shallow_decoder"


def build_model_config(common: CommonComponents) -> LatentMIMConfig:
    return v1_model_config(common, MODEL_SIZE)


if __name__ == "__main__":
    main(**builders_in(globals()))
