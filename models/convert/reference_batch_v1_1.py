"""The reference's OlmoEarth v1.1 model (olmoearth-pretrain 0.1.2), for parity tests.

v1.1 in the reference is its v1 model with these options (scripts/official/v1_1): one band
group for all S2 bands and one for all Landsat bands (`tokenization_config`, encoder and
decoder), Linear patch projections with a per-pixel MLP (`patch_embed_hidden_sizes`), and band
dropout (rate U(0, 0.2) on S2 and Landsat), enabled by the train module on the online encoder.
Importing this module needs the reference (see models/convert/reference_batch.py).
"""

from __future__ import annotations

import torch

from models.convert.reference_batch import V1_MODALITIES, build_reference
from models.latent_mim import sizes
from models.modalities import modalities
from models.testing import reference_env

reference_env.activate()

from olmoearth_pretrain.nn.tokenization import (  # noqa: E402
    ModalityTokenization as RefModalityTokenization,
)
from olmoearth_pretrain.nn.tokenization import (  # noqa: E402
    TokenizationConfig as RefTokenizationConfig,
)

V1_1_BAND_DROPOUT_RATE = 0.2
V1_1_BAND_DROPOUT_MODALITIES = ("sentinel2_l2a", "landsat")


def reference_tokenization(tokenization: modalities.Tokenization) -> RefTokenizationConfig:
    """Our band grouping as the reference's TokenizationConfig (same bands, same order)."""
    return RefTokenizationConfig(
        overrides={
            name: RefModalityTokenization(band_groups=[list(group) for group in groups])
            for name, groups in tokenization.band_groups.items()
        }
    )


def build_reference_v1_1(
    size: sizes.ModelSize,
    drop_path: float,
    pixel_hidden_width: int,
    projection_only_target: bool = False,
    modality_names: tuple[str, ...] = V1_MODALITIES,
    **encoder_options,
) -> torch.nn.Module:
    """The reference's v1.1 LatentMIM at `size`, band dropout enabled on the online encoder.

    Args:
        size: widths, depths and heads of encoder and decoder.
        drop_path: stochastic depth of the encoder blocks (0.1 in the recipe; 0 for parity).
        pixel_hidden_width: the per-pixel MLP width (12 for the released nano, else 64).
        projection_only_target: keep only the patch embeddings as the target.
        modality_names: supported modalities of encoder and decoder.
        encoder_options: further reference EncoderConfig options (v1.2 adds its RoPE here).
    """
    names = list(modality_names)
    tokenization = reference_tokenization(modalities.SINGLE_BANDSET_TOKENIZATION)
    model = build_reference(
        size,
        drop_path,
        projection_only_target,
        modality_names,
        encoder_options={
            "tokenization_config": tokenization,
            "use_linear_patch_embed": True,
            "patch_embed_hidden_sizes": [pixel_hidden_width],
            "band_dropout_rate": V1_1_BAND_DROPOUT_RATE,
            "random_band_dropout": True,
            "band_dropout_modalities": [m for m in V1_1_BAND_DROPOUT_MODALITIES if m in names],
            **encoder_options,
        },
        decoder_options={"tokenization_config": tokenization},
    )
    # What the reference's train module does on construction (train_module.py): the online
    # encoder drops bands, the target copy (made before this) never does.
    model.encoder.enable_band_dropout()
    return model
