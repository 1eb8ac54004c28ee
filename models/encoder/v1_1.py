"""The OlmoEarth v1.1 encoder: v1 with per-pixel MLP patch embeddings and random band dropout.

What changes against v1 (models/encoder/encoder.py), and nothing else:
- patch embeddings: every spatial band set goes through a per-pixel Linear(C, hidden) + ReLU,
  then Linear(hidden * 8 * 8, D) (models/nn/per_pixel_patch_embed.py);
- band dropout on S2 and Landsat (models/nn/band_dropout.py): rate U(0, 0.2) per call, whole
  bands per sample, at least one kept; off until `enable_band_dropout()`, which the v1.1
  LatentMIM calls on its online encoder (models/latent_mim/v1_1.py);
- the tokenization defaults to one token per patch and timestep for all S2 bands and for all
  Landsat bands (modalities.SINGLE_BANDSET_TOKENIZATION). The data and the masking must use the
  same tokenization.

Attention, encodings (absolute), pooling and the decode-only handling are v1's.
"""

from __future__ import annotations

import dataclasses

from models.encoder.encoder import Encoder, EncoderConfig
from models.modalities import modalities
from models.nn.per_pixel_patch_embed import PerPixelMultiModalPatchEmbed

V1_1_BAND_DROPOUT_MODALITIES = ("sentinel2_l2a", "landsat")
"""The modalities the v1.1 / v1.2 scripts give band dropout."""

RELEASED_PIXEL_HIDDEN_WIDTHS = {128: 12}
"""Per-pixel hidden width by encoder width where the released checkpoints differ from 64:
nano (D = 128) was released with 12; tiny, small, base and large use 64."""

DEFAULT_PIXEL_HIDDEN_WIDTH = 64


@dataclasses.dataclass(kw_only=True)
class EncoderV11Config(EncoderConfig):
    """Configuration of `EncoderV11`: `EncoderConfig` plus the v1.1 patch-embedding fields.

    Attributes:
        pixel_hidden_width: per-pixel MLP width; None takes the released choice for this
            encoder width (12 for nano's 128, else 64), so resizing a config keeps it right.
        band_dropout_rate: max band drop rate in [0, 1) (0.2 in v1.1); 0 disables it.
        random_band_dropout: draw the rate from U(0, band_dropout_rate) per call (v1.1).
        band_dropout_modalities: supported modalities that get band dropout (S2, Landsat).
        patch_embed: must be "linear" (the per-pixel MLP works on flattened patches).
        tokenization: defaults to v1.1's single band set for S2 and for Landsat.
    """

    pixel_hidden_width: int | None = None
    band_dropout_rate: float = 0.2
    random_band_dropout: bool = True
    band_dropout_modalities: tuple[str, ...] = V1_1_BAND_DROPOUT_MODALITIES
    patch_embed: str = "linear"
    tokenization: modalities.Tokenization = modalities.SINGLE_BANDSET_TOKENIZATION

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        if self.patch_embed != "linear":
            raise ValueError(
                f"{owner}.patch_embed must be 'linear' (the per-pixel MLP projects flattened "
                f"patches), got {self.patch_embed!r}"
            )
        if self.pixel_hidden_width is not None and self.pixel_hidden_width < 1:
            raise ValueError(
                f"{owner}.pixel_hidden_width must be >= 1 or None (the released width for "
                f"this size), got {self.pixel_hidden_width}"
            )
        if not 0.0 <= self.band_dropout_rate < 1.0:
            raise ValueError(
                f"{owner}.band_dropout_rate must be in [0, 1), got {self.band_dropout_rate}"
            )
        if isinstance(self.band_dropout_modalities, str):
            raise ValueError(
                f"{owner}.band_dropout_modalities must be a sequence of modality names, not the "
                f"string {self.band_dropout_modalities!r}"
            )
        self.band_dropout_modalities = tuple(self.band_dropout_modalities)
        unsupported = set(self.band_dropout_modalities) - set(self.supported_modalities)
        if unsupported:
            raise ValueError(
                f"{owner}.band_dropout_modalities {sorted(unsupported)} are not in "
                f"supported_modalities {list(self.supported_modalities)}; drop them or add them"
            )

    @property
    def resolved_pixel_hidden_width(self) -> int:
        """pixel_hidden_width, or the released width for this encoder width."""
        if self.pixel_hidden_width is not None:
            return self.pixel_hidden_width
        return RELEASED_PIXEL_HIDDEN_WIDTHS.get(self.width, DEFAULT_PIXEL_HIDDEN_WIDTH)

    def build(self) -> EncoderV11:
        return EncoderV11(self)


class EncoderV11(Encoder):
    """v1's `Encoder` with v1.1 patch embeddings; see the module docstring."""

    def __init__(self, config: EncoderV11Config):
        super().__init__(config)
        # Replaces v1's patch embeddings in place (same attribute, same state-dict position).
        self.patch_embed = PerPixelMultiModalPatchEmbed(
            config.specs,
            config.width,
            config.resolved_pixel_hidden_width,
            config.max_patch_size,
            band_dropout_rate=config.band_dropout_rate,
            random_band_dropout=config.random_band_dropout,
            band_dropout_modalities=config.band_dropout_modalities,
        )
        # As v1: decode-only modalities' online patch embeddings never run, so freeze them.
        for name in config.decode_only_modalities:
            self.patch_embed.modalities[name].requires_grad_(False)

    def enable_band_dropout(self) -> None:
        """Turns band dropout on (train mode only). Call it on the online encoder of
        pretraining; fine-tuning, evaluation and the frozen target never enable it."""
        self.patch_embed.enable_band_dropout()
