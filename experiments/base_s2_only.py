"""Base trained on Sentinel-2 alone (no S1, Landsat or map targets).

Hypothesis: the other modalities (encoded S1/Landsat, decoded maps) improve the encoder's
Sentinel-2 features; expected: S2-only probes worse than base's, by the value of multimodality.
Change: model and dataset use only sentinel2_l2a; hyperparameters are base's.
Launch:
    ./tools/bazel run //experiments:base_s2_only -- launch base_s2_only <cluster> \\
        --launch.num_gpus=8 --trainer.callbacks.wandb.project=YYYY_MM_DD_<study>
"""

import dataclasses

from experiments import base as baseline  # what this changes: its other builders, the diff
from experiments.framework import CommonComponents, builders_in, main
from models.data.dataset import DatasetConfig
from models.latent_mim.latent_mim import LatentMIMConfig

CHANGES = ("model", "dataset")


def build_model_config(common: CommonComponents) -> LatentMIMConfig:
    s2_only = dataclasses.replace(common, training_modalities=("sentinel2_l2a",))
    return baseline.build_model_config(s2_only)


def build_dataset_config(common: CommonComponents) -> DatasetConfig:
    s2_only = dataclasses.replace(common, training_modalities=("sentinel2_l2a",))
    return baseline.build_dataset_config(s2_only)


if __name__ == "__main__":
    main(**builders_in(globals()))
