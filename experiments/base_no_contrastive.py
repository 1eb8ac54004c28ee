"""Base without the instance contrastive loss (InfoNCE between the two masked views).

Hypothesis: the InfoNCE term (weight 0.1) is what makes the pooled embedding useful for
classification probes; patch discrimination alone gives good tokens but worse pooled ones.
Change: train_module.contrastive = None; the loss is patch discrimination only.
Expected: similar segmentation probes, lower kNN / linear-probe accuracy on pooled features.
Launch:
    ./tools/bazel run //experiments:base_no_contrastive -- launch base_no_contrastive \\
        <cluster> --launch.num_gpus=8 --trainer.callbacks.wandb.project=YYYY_MM_DD_<study>
"""

import dataclasses

from experiments import base as baseline  # what this changes: its other builders, the diff
from experiments.framework import CommonComponents, builders_in, main
from models.train.train_module import TrainModuleConfig

CHANGES = ("train_module",)


def build_train_module_config(common: CommonComponents) -> TrainModuleConfig:
    return dataclasses.replace(baseline.build_train_module_config(common), contrastive=None)


if __name__ == "__main__":
    main(**builders_in(globals()))
