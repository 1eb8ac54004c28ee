"""v1.2 base: OlmoEarth v1.2's recipe at base size, the baseline of v1.2 ablations.

Hypothesis: none (a baseline; v1.2 = the winner of the reference's temporal-RoPE sweep).
Change (against v1_1_base): rope_3d_mixed (mixed base 1e4, time in months) in encoder and
decoder instead of the additive encodings; fused AdamW, stated (it is already every recipe's
kernel here: same updates as foreach, optim_test); lr 1e-4, weight decay 0.02 as v1.1 base.
Launch:
    ./tools/bazel run //experiments:v1_2_base -- launch v1_2_base <cluster> \\
        --launch.num_gpus=8 --trainer.callbacks.wandb.project=YYYY_MM_DD_<study>
"""

from experiments import script
from experiments import v1_1_base as baseline
from experiments.framework import CommonComponents, builders_in, main

CHANGES = ("model", "train_module")


def build_model_config(common: CommonComponents) -> script.LatentMIMConfig:
    return script.v1_2_model_config(common, "base_shallow_decoder")


def build_train_module_config(common: CommonComponents) -> script.TrainModuleConfig:
    config = baseline.build_train_module_config(common)
    return script.with_adamw(config, lr=1e-4, wd=0.02, fused=True)


if __name__ == "__main__":
    main(**builders_in(globals()))
