"""The OlmoEarth v1.2 model: v1.1 with RoPE (rope_3d_mixed) in encoder and decoder, and its sizes.

v1.2 = v1.1 (per-pixel MLP patch embeddings, band dropout on the online encoder, single band set
for S2 and Landsat) + `rope_3d_mixed` in every attention layer of the encoder and the decoder
(learnable mixed frequencies, magnitude base 1e4, time = days since 2000 / 30), so the additive
spatial and time-slot quarters are gone (models/nn/rope.py). Register tokens and qk-norm exist as
encoder/decoder options (models/encoder/v1_2.py) and are off, as in the reference's scripts.

Sizes: the v1.2 release uses nano, tiny_shallow_decoder, small_shallow_decoder (new in v1.2)
and base_shallow_decoder of the shared table (models/latent_mim/sizes.py). Published parameter
counts (encoder / decoder, OlmoEarth v1.2 README) against ours (v1_2_test.py checks 0.5%):

    name                     published            ours (nine modalities, measured)
    nano                     1.7M / -             1,697,712 / 827,808
    tiny_shallow_decoder     12.46M / -           12,464,176 / 1,856,112
    small_shallow_decoder    35.62M / 7.40M       35,614,048 / 7,398,624
    base_shallow_decoder     113.99M / 29.55M     113,985,472 / 29,542,848
"""

from __future__ import annotations

import dataclasses

from models.encoder.v1_2 import EncoderV12Config
from models.latent_mim import sizes
from models.latent_mim.v1_1 import LatentMIMV11Config, v1_1_encoder_config
from models.modalities import modalities
from models.nn.rope import RopeConfig
from models.predictor.v1_2 import PredictorV12Config

V1_2_SIZES = ("nano", "tiny_shallow_decoder", "small_shallow_decoder", "base_shallow_decoder")
"""The sizes of the v1.2 scripts and releases."""

V1_2_ROPE = RopeConfig(kind="rope_3d_mixed", mixed_base=1e4, temporal_scale=1.0 / 30.0)
"""v1.2's position encoding, in encoder and decoder (scripts/official/v1_2)."""

V1_2_PUBLISHED_COUNTS = {
    "tiny_shallow_decoder": (12.46e6, None),
    "small_shallow_decoder": (35.62e6, 7.40e6),
    "base_shallow_decoder": (113.99e6, 29.55e6),
}
"""Encoder / decoder parameters published with the v1.2 release (None: not published)."""


def v1_2_encoder_config(
    size: sizes.ModelSize,
    modality_names: tuple[str, ...] = modalities.TRAINING_MODALITIES,
    config_class: type[EncoderV12Config] = EncoderV12Config,
    rope: RopeConfig | None = V1_2_ROPE,
) -> EncoderV12Config:
    """The v1.2 encoder at `size`: v1.1's (`v1_1_encoder_config`) with `rope`."""
    encoder = v1_1_encoder_config(size, modality_names, config_class)
    return dataclasses.replace(encoder, rope=rope)


def v1_2_predictor_config(
    size: sizes.ModelSize,
    modality_names: tuple[str, ...] = modalities.TRAINING_MODALITIES,
    tokenization: modalities.Tokenization = modalities.SINGLE_BANDSET_TOKENIZATION,
    config_class: type[PredictorV12Config] = PredictorV12Config,
    rope: RopeConfig | None = V1_2_ROPE,
) -> PredictorV12Config:
    """The v1.2 decoder at `size`: v1's shape and drop path (0) with `rope`."""
    predictor = sizes.v1_predictor_config(size, modality_names, tokenization, config_class)
    return dataclasses.replace(predictor, rope=rope)


@dataclasses.dataclass(kw_only=True)
class LatentMIMV12Config(LatentMIMV11Config):
    """`LatentMIMV11Config` with v1.2 encoder and decoder configs by default (`from_size`).

    Builds v1.1's `LatentMIMV11` (band dropout on the online encoder): the model class is the
    same; the encoder and decoder classes come from their configs.
    """

    @classmethod
    def from_size(
        cls,
        name: str | sizes.ModelSize,
        *,
        modalities: tuple[str, ...] = modalities.TRAINING_MODALITIES,
        tokenization: modalities.Tokenization = modalities.SINGLE_BANDSET_TOKENIZATION,
        encoder_class: type[EncoderV12Config] = EncoderV12Config,
        decoder_class: type[PredictorV12Config] = PredictorV12Config,
        rope: RopeConfig | None = V1_2_ROPE,
        **kwargs,
    ) -> LatentMIMV12Config:
        """The v1.2 model at size `name` (a key of sizes.MODEL_SIZES, or a ModelSize).

        `rope` goes to encoder and decoder (None: v1.1's absolute encodings); `kwargs` go to
        this config (e.g. target="ema").
        """
        size = sizes.get_size(name) if isinstance(name, str) else name
        encoder = dataclasses.replace(
            v1_2_encoder_config(size, modalities, encoder_class, rope), tokenization=tokenization
        )
        decoder = v1_2_predictor_config(size, modalities, tokenization, decoder_class, rope)
        return cls(encoder=encoder, decoder=decoder, **kwargs)
