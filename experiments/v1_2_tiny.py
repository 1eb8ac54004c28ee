"""v1.2 tiny: the v1.2 recipe at tiny_shallow_decoder size (the reference's v1.2 size sweep).

Hypothesis: none; a v1.2 size recipe (lr/wd of the reference's v1.2 sizes: notes section 4.3).
Change (against v1_2_base): model size tiny_shallow_decoder (192 wide, 12 + 4 blocks); lr
2e-4, weight decay 0.002.
Launch:
    ./tools/bazel run //experiments:v1_2_tiny -- launch v1_2_tiny <cluster> \\
        --launch.num_gpus=8 --trainer.callbacks.wandb.project=YYYY_MM_DD_<study>
"""

from experiments import script
from experiments import v1_2_base as baseline
from experiments.framework import CommonComponents, builders_in, main

CHANGES = ("model", "train_module")


def build_model_config(common: CommonComponents) -> script.LatentMIMConfig:
    return script.v1_2_model_config(common, "tiny_shallow_decoder")


def build_train_module_config(common: CommonComponents) -> script.TrainModuleConfig:
    return script.with_adamw(baseline.build_train_module_config(common), lr=2e-4, wd=0.002)


if __name__ == "__main__":
    main(**builders_in(globals()))
