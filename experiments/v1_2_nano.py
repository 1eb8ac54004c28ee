"""v1.2 nano: the v1.2 recipe at nano size (the reference's v1.2 size sweep).

Hypothesis: none; a v1.2 size recipe (lr/wd of the reference's v1.2 sizes: notes section 4.3).
Change (against v1_2_base): model size nano (per-pixel MLP 12 wide); lr 2e-4, weight decay
0.02; on `local` only, nano's CPU-sized step (script.for_local_cpu: batch 8, token budget 300,
warmup 20).
Launch:
    ./tools/bazel run //experiments:v1_2_nano -- launch v1_2_nano <cluster> \\
        --launch.num_gpus=1 --trainer.callbacks.wandb.project=YYYY_MM_DD_<study>
"""

from experiments import script
from experiments import v1_2_base as baseline
from experiments.framework import CommonComponents, builders_in, main

CHANGES = ("model", "data_loader", "train_module")


def build_model_config(common: CommonComponents) -> script.LatentMIMConfig:
    return script.v1_2_model_config(common, "nano")


def build_dataloader_config(common: CommonComponents) -> script.MaskedDataLoaderConfig:
    return script.for_local_cpu(common, script.v1_1_dataloader_config(common))


def build_train_module_config(common: CommonComponents) -> script.TrainModuleConfig:
    config = script.with_adamw(baseline.build_train_module_config(common), lr=2e-4, wd=0.02)
    return script.for_local_cpu(common, config)


if __name__ == "__main__":
    main(**builders_in(globals()))
