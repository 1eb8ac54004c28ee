"""Per-modality projections in encoder and decoder (3 of 3 per-modality ablations).

Hypothesis: the encoder's per-modality projection and the decoder's per-modality heads
help in different places, so together they beat either alone (their gains add up).
Change: both configs of base_encoder_per_mod_proj and base_decoder_per_mod_proj.
Expected: better than both single ablations; if not better than the best one, the two
changes overlap.
Launch:
    ./tools/bazel run //experiments:base_both_per_mod_proj -- launch \\
        base_both_per_mod_proj <cluster> --launch.num_gpus=8 \\
        --trainer.callbacks.wandb.project=YYYY_MM_DD_per_modality_projection_experiments
"""

import dataclasses

from experiments import base as baseline  # noqa: F401 (what this changes: builders, diff)
from experiments.base_encoder_per_mod_proj import build_model_config as build_encoder_variant
from experiments.framework import CommonComponents, as_subclass, builders_in, main
from models.latent_mim.latent_mim import LatentMIMConfig
from models.predictor.per_modality_output import PredictorWithPerModalityOutputConfig

CHANGES = ("model",)


def build_model_config(common: CommonComponents) -> LatentMIMConfig:
    model = build_encoder_variant(common)
    decoder = as_subclass(model.decoder, PredictorWithPerModalityOutputConfig)
    return dataclasses.replace(model, decoder=decoder)


if __name__ == "__main__":
    main(**builders_in(globals()))
