"""v1.1 base: OlmoEarth v1.1's recipe at base size, the baseline of v1.1 ablations.

Hypothesis: none (a baseline; the v1.1 report: base's quality for 1.7x fewer GPU hours).
Change (against v1 base): the v1.1 model (one S2 and one Landsat band set, per-pixel MLP 64,
band dropout on S2/Landsat), random_time_with_decode masking, 16 loader workers prefetching 4,
masked-negatives patch loss, InfoNCE weight 0.05, microbatch 64 (script.py: v1.1 recipe).
Launch:
    ./tools/bazel run //experiments:v1_1_base -- launch v1_1_base <cluster> \\
        --launch.num_gpus=8 --trainer.callbacks.wandb.project=YYYY_MM_DD_<study>
"""

from experiments import base as baseline  # noqa: F401 (what this changes: builders, diff)
from experiments import script
from experiments.framework import CommonComponents, builders_in, main

CHANGES = ("model", "data_loader", "train_module")


def build_model_config(common: CommonComponents) -> script.LatentMIMConfig:
    return script.v1_1_model_config(common, "base_shallow_decoder")


def build_dataloader_config(common: CommonComponents) -> script.MaskedDataLoaderConfig:
    return script.v1_1_dataloader_config(common)


def build_train_module_config(common: CommonComponents) -> script.TrainModuleConfig:
    return script.v1_1_train_module_config(common)


if __name__ == "__main__":
    main(**builders_in(globals()))
