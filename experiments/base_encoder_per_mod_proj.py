"""Per-modality projection in the encoder only (1 of 3 per-modality projection ablations).

Hypothesis: a Linear(D, D) per modality after the encoder blocks, before the shared final
norm, improves representations by letting each modality refine its own features.
Change: the encoder config becomes EncoderWithPerModalityProjectionConfig (+3 x 768^2 weights
for S2, S1, Landsat); decoder and every hyperparameter are base's.
Expected: lower patch-discrimination loss and better S1/Landsat probes than base.
Launch:
    ./tools/bazel run //experiments:base_encoder_per_mod_proj -- launch \\
        base_encoder_per_mod_proj <cluster> --launch.num_gpus=8 \\
        --trainer.callbacks.wandb.project=YYYY_MM_DD_per_modality_projection_experiments
"""

import dataclasses

from experiments import base as baseline  # what this changes: its other builders, the diff
from experiments.framework import CommonComponents, as_subclass, builders_in, main
from models.encoder.per_modality_projection import EncoderWithPerModalityProjectionConfig
from models.latent_mim.latent_mim import LatentMIMConfig

CHANGES = ("model",)


def build_model_config(common: CommonComponents) -> LatentMIMConfig:
    model = baseline.build_model_config(common)
    encoder = as_subclass(model.encoder, EncoderWithPerModalityProjectionConfig)
    return dataclasses.replace(model, encoder=encoder)


if __name__ == "__main__":
    main(**builders_in(globals()))
