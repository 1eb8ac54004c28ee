"""Per-pixel MLP patch embeddings (OlmoEarth v1.1 / v1.2), with optional band dropout.

v1 projects a flattened 8 x 8 x C patch with one Linear. v1.1 first maps every pixel's C bands
through Linear(C, hidden) + ReLU (weights shared by all pixels), then projects the flattened
8 x 8 x hidden patch with Linear(hidden * 64, D). hidden is 64 in the released v1.1 / v1.2
models except nano, whose released checkpoints use 12 (reference facts, section 2.1).

Patch sizes other than 8 work as in v1 (models/nn/patch_embed.py) and as the reference: the
*input image* is resized (bicubic, antialiased) so each p x p patch becomes 8 x 8 pixels, and
the per-pixel MLP runs on the resized pixels. The weights never change shape.

Band dropout (models/nn/band_dropout.py) runs on each band set's selected bands, before the
resize and the MLP, as in the reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import einops
import torch
from torch import Tensor, nn

from models.modalities import modalities
from models.nn.band_dropout import BandDropout
from models.nn.patch_embed import FlexiPatchEmbed, ModalityPatchEmbed, MultiModalPatchEmbed


class PerPixelFlexiPatchEmbed(FlexiPatchEmbed):
    """`FlexiPatchEmbed` with a per-pixel Linear(C, hidden) + ReLU before the patch Linear.

    Args:
        in_channels: bands in the band set.
        width: token width D.
        hidden_width: per-pixel features (64 in v1.1; 12 for nano).
        max_patch_size: side of the patch the weights cover (8).

    Both Linears keep PyTorch's default initialisation, as the reference (its encoder-level
    xavier init skips them).
    """

    def __init__(self, in_channels: int, width: int, hidden_width: int, max_patch_size: int = 8):
        super().__init__(in_channels, width, max_patch_size, kind="linear")
        if hidden_width < 1:
            raise ValueError(
                f"PerPixelFlexiPatchEmbed hidden_width must be >= 1, got {hidden_width}"
            )
        self.hidden_width = hidden_width
        self.pixel_proj = nn.Linear(in_channels, hidden_width)
        self.pixel_proj.keep_default_init = True
        self.proj = nn.Linear(hidden_width * max_patch_size**2, width)
        self.proj.keep_default_init = True

    def project(self, images: Tensor) -> Tensor:
        """[N, C, h * 8, w * 8] images already at the base patch size -> [N, h, w, D]."""
        pixels = einops.rearrange(images, "n c y x -> n y x c")
        features = torch.relu(self.pixel_proj(pixels))
        patches = einops.rearrange(
            features,
            "n (h p1) (w p2) f -> n h w (p1 p2 f)",
            p1=self.max_patch_size,
            p2=self.max_patch_size,
        )
        return self.proj(patches)


class PerPixelModalityPatchEmbed(ModalityPatchEmbed):
    """All band sets of one modality: `PerPixelFlexiPatchEmbed` per spatial band set (a
    non-spatial modality keeps v1's Linear(C_s, D)), band dropout before each projection.

    Args:
        spec: the modality with the band sets that become tokens.
        width: token width D.
        hidden_width: per-pixel features of the spatial projections.
        max_patch_size: patch side the projection weights cover.
        band_dropout: applied to every band set of this modality; None for no dropout.
    """

    def __init__(
        self,
        spec: modalities.ModalitySpec,
        width: int,
        hidden_width: int,
        max_patch_size: int = 8,
        band_dropout: BandDropout | None = None,
    ):
        super().__init__(spec, width, max_patch_size, kind="linear")
        if spec.is_spatial:
            # v1's constructor builds its projections inline; they are replaced here so that
            # the v1 class stays untouched (the cost is one discarded default init).
            self.band_sets = nn.ModuleList(
                PerPixelFlexiPatchEmbed(len(bands), width, hidden_width, max_patch_size)
                for bands in spec.band_set_indices()
            )
        self.band_dropout = band_dropout

    def forward(self, data: Tensor, patch_size: int) -> Tensor:
        """Spatial [B, H, W, T, C] -> [B, h, w, T, S, D]; non-spatial [B, C] -> [B, S, D]."""
        if self.spec.is_spatial:
            height, width = data.shape[1:3]
            if height % patch_size or width % patch_size:
                raise ValueError(
                    f"{self.spec.name}: image of {height}x{width} pixels does not split into "
                    f"patches of {patch_size}; H and W must be multiples of the patch size"
                )
        per_set = []
        for index, embed in enumerate(self.band_sets):
            bands = data.index_select(-1, self.band_index(index))
            if self.band_dropout is not None:
                bands = self.band_dropout(bands)
            per_set.append(embed(bands, patch_size) if self.spec.is_spatial else embed(bands))
        return torch.stack(per_set, dim=-2)


class PerPixelMultiModalPatchEmbed(MultiModalPatchEmbed):
    """One `PerPixelModalityPatchEmbed` per supported modality; band dropout on some of them.

    Args:
        specs: the supported modalities, with the band sets that become tokens.
        width: token width D.
        hidden_width: per-pixel features of the spatial projections.
        max_patch_size: patch side the projection weights cover.
        band_dropout_rate: max drop rate (the rate is U(0, rate) per call with
            `random_band_dropout`); 0 builds no dropout.
        random_band_dropout: draw the rate per call (the v1.1 recipe) instead of fixing it.
        band_dropout_modalities: the modalities that get dropout (v1.1: S2 and Landsat).

    The dropout starts disabled: `enable_band_dropout()` turns it on (for the online encoder of
    pretraining only), and it acts in train mode only.
    """

    def __init__(
        self,
        specs: Sequence[modalities.ModalitySpec],
        width: int,
        hidden_width: int,
        max_patch_size: int = 8,
        band_dropout_rate: float = 0.0,
        random_band_dropout: bool = True,
        band_dropout_modalities: Sequence[str] = (),
    ):
        # The v1 constructor with no modalities sets the shared attributes; the per-modality
        # embeddings are built here with the per-pixel class.
        super().__init__((), width, max_patch_size, kind="linear")
        self.specs = {spec.name: spec for spec in specs}
        unknown = set(band_dropout_modalities) - set(self.specs)
        if unknown:
            raise ValueError(
                f"band_dropout_modalities {sorted(unknown)} are not supported modalities "
                f"{list(self.specs)}"
            )
        self.modalities = nn.ModuleDict(
            {
                spec.name: PerPixelModalityPatchEmbed(
                    spec,
                    width,
                    hidden_width,
                    max_patch_size,
                    band_dropout=(
                        BandDropout(band_dropout_rate, random_band_dropout)
                        if band_dropout_rate > 0.0 and spec.name in band_dropout_modalities
                        else None
                    ),
                )
                for spec in specs
            }
        )

    def band_dropouts(self) -> dict[str, BandDropout]:
        """The modalities with band dropout and their dropout modules."""
        return {
            name: module.band_dropout
            for name, module in self.modalities.items()
            if module.band_dropout is not None
        }

    def enable_band_dropout(self) -> None:
        """Turns band dropout on for the configured modalities (train mode only)."""
        for dropout in self.band_dropouts().values():
            dropout.enable()
