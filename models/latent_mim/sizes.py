"""Model sizes by name (the reference's MODEL_SIZE_ARGS) and the v1 recipe's model configs.

Parameter counts of the v1 recipe (nine training modalities, Conv patch embeddings, 3 S2 and
2 Landsat band sets), measured on the reference and on ours (see sizes_test.py):

    name                    encoder      decoder
    nano                    1.36M        0.83M
    tiny_shallow_decoder    6.20M        1.86M
    base_shallow_decoder    88.95M       29.54M
    large_shallow_decoder   307.8M       52.5M
"""

from __future__ import annotations

import dataclasses
from typing import Any

from models.encoder.encoder import EncoderConfig
from models.modalities import modalities
from models.predictor.predictor import PredictorConfig


@dataclasses.dataclass(frozen=True)
class ModelSize:
    """Widths, depths and heads of an encoder/decoder pair (every size uses mlp_ratio 4)."""

    encoder_width: int
    encoder_depth: int
    encoder_heads: int
    decoder_width: int
    decoder_depth: int
    decoder_heads: int
    mlp_ratio: float = 4.0


def _size(enc: tuple[int, int, int], dec: tuple[int, int, int]) -> ModelSize:
    return ModelSize(*enc, *dec)


MODEL_SIZES: dict[str, ModelSize] = {
    "nano": _size((128, 4, 8), (128, 4, 8)),
    "tiny": _size((192, 12, 3), (192, 12, 3)),
    "tiny_more_heads": _size((192, 12, 8), (192, 12, 8)),
    "base": _size((768, 12, 12), (768, 12, 12)),
    "large": _size((1024, 24, 16), (1024, 24, 16)),
    "giga": _size((1536, 40, 24), (1536, 40, 24)),
    "tiny_shallow_decoder": _size((192, 12, 3), (192, 4, 3)),
    "small_shallow_decoder": _size((384, 12, 6), (384, 4, 6)),
    "base_shallow_decoder": _size((768, 12, 12), (768, 4, 12)),
    "large_shallow_decoder": _size((1024, 24, 16), (1024, 4, 16)),
    "giga_shallow_decoder": _size((1536, 40, 24), (1536, 4, 24)),
    "tiny_super_shallow_decoder": _size((192, 12, 3), (192, 2, 3)),
    "base_super_shallow_decoder": _size((768, 12, 12), (768, 2, 12)),
    "large_super_shallow_decoder": _size((1024, 24, 16), (1024, 2, 16)),
    "giga_super_shallow_decoder": _size((1536, 40, 24), (1536, 2, 24)),
    "base_many_heads_shallow_decoder": _size((768, 8, 16), (768, 4, 12)),
    "base_many_heads_shallower_decoder": _size((768, 8, 16), (768, 2, 12)),
}
"""Every size of the reference's table. The official v1 scripts use nano,
tiny_shallow_decoder, base_shallow_decoder and large_shallow_decoder."""

V1_ENCODER_DROP_PATH = 0.1
V1_DECODER_DROP_PATH = 0.0
V1_PATCH_EMBED = "conv"
"""v1 checkpoints were trained with Conv2d patch projections (use_linear_patch_embed=False)."""

V1_MIN_PATCH_SIZE = 1
V1_MAX_PATCH_SIZE = 8
"""The v1 patch sizes, 1..8 pixels: what the encoder and predictor support and what the
recipe's loader draws from per step (experiments/script.py reads them here; a loader may
draw from a narrower range, which models/train/pretrain.py checks against the encoder)."""


def get_size(name: str) -> ModelSize:
    """The size called `name`, or a ValueError listing the valid names."""
    try:
        return MODEL_SIZES[name]
    except KeyError:
        raise ValueError(
            f"unknown model size {name!r}; valid sizes are {list(MODEL_SIZES)}"
        ) from None


def resized(model: Any, size_name: str | ModelSize) -> Any:
    """`model` (a LatentMIMConfig with any encoder and decoder config classes) at the size
    called `size_name`, or at that ModelSize itself (e.g. tiny_run's TINY_SIZE): the encoder's
    and decoder's widths, depths, heads and mlp ratio, and the decoder's encoder_width and
    output_width (the target tokens' width), are the size's; every other field and every
    config class (a variant's subclass) is kept.

    Raises:
        ValueError: an unknown size name (the message lists the valid ones).
    """
    size = size_name if isinstance(size_name, ModelSize) else get_size(size_name)
    encoder = dataclasses.replace(
        model.encoder,
        width=size.encoder_width,
        depth=size.encoder_depth,
        num_heads=size.encoder_heads,
        mlp_ratio=size.mlp_ratio,
    )
    decoder = dataclasses.replace(
        model.decoder,
        width=size.decoder_width,
        depth=size.decoder_depth,
        num_heads=size.decoder_heads,
        mlp_ratio=size.mlp_ratio,
        encoder_width=size.encoder_width,
        output_width=size.encoder_width,
    )
    return dataclasses.replace(model, encoder=encoder, decoder=decoder)


def v1_encoder_config(
    size: ModelSize,
    modality_names: tuple[str, ...] = modalities.TRAINING_MODALITIES,
    tokenization: modalities.Tokenization = modalities.DEFAULT_TOKENIZATION,
    config_class: type[EncoderConfig] = EncoderConfig,
) -> EncoderConfig:
    """The v1 encoder: S2/S1/Landsat encoded, maps decode-only (registry flags), Conv patch
    embeddings over the v1 patch sizes (1..8), drop_path 0.1."""
    return config_class(
        width=size.encoder_width,
        depth=size.encoder_depth,
        num_heads=size.encoder_heads,
        mlp_ratio=size.mlp_ratio,
        drop_path=V1_ENCODER_DROP_PATH,
        supported_modalities=modality_names,
        max_patch_size=V1_MAX_PATCH_SIZE,
        min_patch_size=V1_MIN_PATCH_SIZE,
        patch_embed=V1_PATCH_EMBED,
        tokenization=tokenization,
    )


def v1_predictor_config(
    size: ModelSize,
    modality_names: tuple[str, ...] = modalities.TRAINING_MODALITIES,
    tokenization: modalities.Tokenization = modalities.DEFAULT_TOKENIZATION,
    config_class: type[PredictorConfig] = PredictorConfig,
) -> PredictorConfig:
    """The v1 predictor: same modalities, drop_path 0, predictions at the encoder width."""
    return config_class(
        width=size.decoder_width,
        depth=size.decoder_depth,
        num_heads=size.decoder_heads,
        encoder_width=size.encoder_width,
        mlp_ratio=size.mlp_ratio,
        drop_path=V1_DECODER_DROP_PATH,
        supported_modalities=modality_names,
        max_patch_size=V1_MAX_PATCH_SIZE,
        tokenization=tokenization,
    )
