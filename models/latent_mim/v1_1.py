"""The OlmoEarth v1.1 model: v1's LatentMIM with a v1.1 encoder whose band dropout is on.

`LatentMIMV11` enables band dropout on its online encoder when it is built, after the frozen
target has copied the patch embeddings (so the target never drops bands). This is where the
reference's train module calls `enable_band_dropout()`: on the pretraining model's online
encoder. The dropout acts only in train mode, so evaluating this model (or its encoder) in eval
mode sees every band; an encoder built on its own (fine-tuning) starts with it off.

The decoder is v1's predictor with v1.1's tokenization. The v1.1 recipe's loss (masked-negatives
patch discrimination, InfoNCE weight 0.05) and masking (random_time_with_decode) live in
models/losses and models/masking; experiments/ put them together.

Parameters of the reference's v1.1 (nine training modalities; parity_v1_1_test.py checks ours
equal them less the frozen month tables, 12 x D / 4 per component, which we compute):

    name                    per-pixel   encoder      decoder
    nano                    12          1.70M        0.83M
    tiny_shallow_decoder    64          12.46M       1.86M
    base_shallow_decoder    64          113.97M      29.54M
"""

from __future__ import annotations

import dataclasses

from models.encoder.v1_1 import V1_1_BAND_DROPOUT_MODALITIES, EncoderV11, EncoderV11Config
from models.latent_mim import sizes
from models.latent_mim.latent_mim import LatentMIM, LatentMIMConfig
from models.modalities import modalities
from models.predictor.predictor import PredictorConfig


def v1_1_encoder_config(
    size: sizes.ModelSize,
    modality_names: tuple[str, ...] = modalities.TRAINING_MODALITIES,
    config_class: type[EncoderV11Config] = EncoderV11Config,
) -> EncoderV11Config:
    """The v1.1 encoder at `size`: v1's shape and drop path, v1.1 patch embeddings (per-pixel
    width by size), band dropout U(0, 0.2) on S2 and Landsat, single-band-set tokenization."""
    return config_class(
        width=size.encoder_width,
        depth=size.encoder_depth,
        num_heads=size.encoder_heads,
        mlp_ratio=size.mlp_ratio,
        drop_path=sizes.V1_ENCODER_DROP_PATH,
        supported_modalities=modality_names,
        max_patch_size=sizes.V1_MAX_PATCH_SIZE,
        min_patch_size=sizes.V1_MIN_PATCH_SIZE,
        band_dropout_modalities=tuple(
            name for name in V1_1_BAND_DROPOUT_MODALITIES if name in modality_names
        ),
    )


@dataclasses.dataclass(kw_only=True)
class LatentMIMV11Config(LatentMIMConfig):
    """`LatentMIMConfig` whose encoder is an `EncoderV11Config` (or a subclass: v1.2's)."""

    encoder: EncoderV11Config

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.encoder, EncoderV11Config):
            raise ValueError(
                f"{type(self).__name__}.encoder must be an EncoderV11Config (or a subclass), "
                f"got {type(self.encoder).__name__}"
            )

    @classmethod
    def from_size(
        cls,
        name: str | sizes.ModelSize,
        *,
        modalities: tuple[str, ...] = modalities.TRAINING_MODALITIES,
        tokenization: modalities.Tokenization = modalities.SINGLE_BANDSET_TOKENIZATION,
        encoder_class: type[EncoderV11Config] = EncoderV11Config,
        decoder_class: type[PredictorConfig] = PredictorConfig,
        **kwargs,
    ) -> LatentMIMV11Config:
        """The v1.1 model at size `name` (a key of sizes.MODEL_SIZES, or a ModelSize).

        The encoder is `v1_1_encoder_config` with `tokenization`; the decoder is v1's with the
        same tokenization. `kwargs` go to this config (e.g. target="ema").
        """
        size = sizes.get_size(name) if isinstance(name, str) else name
        encoder = dataclasses.replace(
            v1_1_encoder_config(size, modalities, encoder_class), tokenization=tokenization
        )
        decoder = sizes.v1_predictor_config(size, modalities, tokenization, decoder_class)
        return cls(encoder=encoder, decoder=decoder, **kwargs)

    def build(self) -> LatentMIMV11:
        return LatentMIMV11(self)


class LatentMIMV11(LatentMIM):
    """v1's `LatentMIM` whose online encoder has band dropout enabled (module docstring)."""

    encoder: EncoderV11

    def __init__(self, config: LatentMIMV11Config):
        super().__init__(config)
        self.encoder.enable_band_dropout()
