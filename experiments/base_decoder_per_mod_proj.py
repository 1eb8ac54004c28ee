"""Per-modality output heads in the decoder only (2 of 3 per-modality projection ablations).

Hypothesis: modalities whose targets differ in kind (spectral series vs. categorical maps)
are predicted better by separate output projections than by one shared head.
Change: the decoder config becomes PredictorWithPerModalityOutputConfig (one
Linear(768, 768) per modality instead of one shared); encoder and hyperparameters are base's.
Expected: lower loss on the map modalities; encoder features as good as base's or better.
Launch:
    ./tools/bazel run //experiments:base_decoder_per_mod_proj -- launch \\
        base_decoder_per_mod_proj <cluster> --launch.num_gpus=8 \\
        --trainer.callbacks.wandb.project=YYYY_MM_DD_per_modality_projection_experiments
"""

import dataclasses

from experiments import base as baseline  # what this changes: its other builders, the diff
from experiments.framework import CommonComponents, as_subclass, builders_in, main
from models.latent_mim.latent_mim import LatentMIMConfig
from models.predictor.per_modality_output import PredictorWithPerModalityOutputConfig

CHANGES = ("model",)


def build_model_config(common: CommonComponents) -> LatentMIMConfig:
    model = baseline.build_model_config(common)
    decoder = as_subclass(model.decoder, PredictorWithPerModalityOutputConfig)
    return dataclasses.replace(model, decoder=decoder)


if __name__ == "__main__":
    main(**builders_in(globals()))
