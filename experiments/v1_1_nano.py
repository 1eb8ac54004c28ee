"""v1.1 nano: the v1.1 recipe at nano size (reference scripts/official/v1_1/nano.py).

Hypothesis: none; the v1.1 size recipe for quick studies and a CPU run.
Change (against v1_1_base): model size nano (per-pixel MLP 12 wide), lr 2e-4 (weight decay
0.02 as base); on `local` only, nano's CPU-sized step (script.for_local_cpu: batch 8, token
budget 300, warmup 20).
Launch:
    ./tools/bazel run //experiments:v1_1_nano -- launch v1_1_nano <cluster> \\
        --launch.num_gpus=1 --trainer.callbacks.wandb.project=YYYY_MM_DD_<study>
"""

from experiments import script
from experiments import v1_1_base as baseline
from experiments.framework import CommonComponents, builders_in, main

CHANGES = ("model", "data_loader", "train_module")


def build_model_config(common: CommonComponents) -> script.LatentMIMConfig:
    return script.v1_1_model_config(common, "nano")


def build_dataloader_config(common: CommonComponents) -> script.MaskedDataLoaderConfig:
    return script.for_local_cpu(common, baseline.build_dataloader_config(common))


def build_train_module_config(common: CommonComponents) -> script.TrainModuleConfig:
    config = script.with_adamw(baseline.build_train_module_config(common), lr=2e-4, wd=0.02)
    return script.for_local_cpu(common, config)


if __name__ == "__main__":
    main(**builders_in(globals()))
