"""Patch embeddings: one projection per (modality, band set), flexible in the patch size.

FlexiViT-style, as OlmoEarth v1: the projection weights always cover a max_patch_size x
max_patch_size patch (8 x 8). For a requested patch size p != 8 the *input image* is resized
(bicubic, antialiased) so that every p x p patch becomes 8 x 8 pixels, then projected with the
same weights. With p = 1 the image is upsampled 8x; p in 1..8 all work.

Masks are per band set at pixel resolution and constant inside a patch, so a token's mask is
read at its patch's top-left pixel. Shapes use the legend of models/modalities/samples.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import einops
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.modalities import modalities
from models.modalities.samples import MaskedSample, TokensAndMasks

PATCH_EMBED_KINDS = ("conv", "linear")
"""`conv`: Conv2d(k=8, s=8), the v1 checkpoints. `linear`: Linear on the flattened
(p1 p2 c) patch, the same map computed as one GEMM (faster on tensor cores)."""


def resize_to_base_patches(images: Tensor, patch_size: int, base_patch_size: int) -> Tensor:
    """Resizes [N, C, H, W] so each patch_size x patch_size patch becomes base x base pixels.

    Bicubic with antialias, to (H / p * base, W / p * base), exactly as the reference.
    """
    if patch_size == base_patch_size:
        return images
    height, width = images.shape[-2:]
    size = (height // patch_size * base_patch_size, width // patch_size * base_patch_size)
    return F.interpolate(images, size=size, mode="bicubic", antialias=True)


class FlexiPatchEmbed(nn.Module):
    """Embeds one band set of a spatial modality, for any patch size 1..max_patch_size.

    Args:
        in_channels: bands in the band set.
        width: token width D.
        max_patch_size: side of the patch the weights cover (8 in v1).
        kind: one of PATCH_EMBED_KINDS.

    The projection keeps PyTorch's default initialisation (the reference skips its xavier
    init here: overriding it correlated with a downstream regression).
    """

    def __init__(self, in_channels: int, width: int, max_patch_size: int = 8, kind: str = "conv"):
        super().__init__()
        if kind not in PATCH_EMBED_KINDS:
            raise ValueError(
                f"FlexiPatchEmbed kind must be one of {PATCH_EMBED_KINDS}, got {kind!r}"
            )
        self.in_channels = in_channels
        self.width = width
        self.max_patch_size = max_patch_size
        self.kind = kind
        if kind == "conv":
            self.proj: nn.Module = nn.Conv2d(
                in_channels, width, kernel_size=max_patch_size, stride=max_patch_size
            )
        else:
            self.proj = nn.Linear(in_channels * max_patch_size**2, width)
        self.proj.keep_default_init = True

    def project(self, images: Tensor) -> Tensor:
        """[N, C, h * 8, w * 8] images already at the base patch size -> [N, h, w, D]."""
        if self.kind == "conv":
            return einops.rearrange(self.proj(images), "n d h w -> n h w d")
        patches = einops.rearrange(
            images,
            "n c (h p1) (w p2) -> n h w (p1 p2 c)",
            p1=self.max_patch_size,
            p2=self.max_patch_size,
        )
        return self.proj(patches)

    def forward(self, x: Tensor, patch_size: int) -> Tensor:
        """[B, H, W, T, C] -> [B, H / p, W / p, T, D]."""
        batch = x.shape[0]
        images = einops.rearrange(x, "b h w t c -> (b t) c h w")
        images = resize_to_base_patches(images, patch_size, self.max_patch_size)
        tokens = self.project(images)
        return einops.rearrange(tokens, "(b t) h w d -> b h w t d", b=batch)


class ModalityPatchEmbed(nn.Module):
    """All band sets of one modality: one projection per band set.

    Spatial modalities: one `FlexiPatchEmbed` per band set. Non-spatial modalities (lat/lon):
    one Linear(C_s, D) per band set.

    Band selection uses `spec.band_set_indices()`, kept in non-persistent index buffers.
    """

    def __init__(
        self, spec: modalities.ModalitySpec, width: int, max_patch_size: int = 8, kind: str = "conv"
    ):
        super().__init__()
        self.spec = spec
        self.max_patch_size = max_patch_size
        band_sets: list[nn.Module] = []
        for index, bands in enumerate(spec.band_set_indices()):
            if spec.is_spatial:
                band_sets.append(FlexiPatchEmbed(len(bands), width, max_patch_size, kind))
            else:
                band_sets.append(nn.Linear(len(bands), width))
            self.register_buffer(
                f"band_index_{index}", torch.tensor(bands, dtype=torch.long), persistent=False
            )
        self.band_sets = nn.ModuleList(band_sets)

    def band_index(self, index: int) -> Tensor:
        return getattr(self, f"band_index_{index}")

    def forward(self, data: Tensor, patch_size: int) -> Tensor:
        """Spatial [B, H, W, T, C] -> [B, h, w, T, S, D]; non-spatial [B, C] -> [B, S, D]."""
        if not self.spec.is_spatial:
            per_set = [
                embed(data.index_select(-1, self.band_index(index)))
                for index, embed in enumerate(self.band_sets)
            ]
            return torch.stack(per_set, dim=-2)
        height, width = data.shape[1:3]
        if height % patch_size or width % patch_size:
            raise ValueError(
                f"{self.spec.name}: image of {height}x{width} pixels does not split into "
                f"patches of {patch_size}; H and W must be multiples of the patch size"
            )
        # Select, then resize each band set, in the reference's order: the conv's summation
        # order depends on its input's memory layout, and this order makes our tokens equal to
        # the reference's bit for bit (resizing all bands once differs by ~1e-5 on the 30-band
        # OSM map, whose T = 1 layout is channels-last).
        per_set = [
            embed(data.index_select(-1, self.band_index(index)), patch_size)
            for index, embed in enumerate(self.band_sets)
        ]
        return torch.stack(per_set, dim=-2)


def token_mask(mask: Tensor, spec: modalities.ModalitySpec, patch_size: int) -> Tensor:
    """Pixel mask [B, H, W, T, S] -> token mask [B, h, w, T, S] (top-left pixel of each patch).

    Non-spatial masks [B, S] are already per token and come back unchanged.
    """
    if not spec.is_spatial:
        return mask
    return mask[:, ::patch_size, ::patch_size]


class MultiModalPatchEmbed(nn.Module):
    """One `ModalityPatchEmbed` per supported modality.

    Args:
        specs: the supported modalities, with the band sets that become tokens.
        width: token width D.
        max_patch_size: patch side the projection weights cover.
        kind: one of PATCH_EMBED_KINDS.
    """

    def __init__(
        self,
        specs: Sequence[modalities.ModalitySpec],
        width: int,
        max_patch_size: int = 8,
        kind: str = "conv",
    ):
        super().__init__()
        self.specs = {spec.name: spec for spec in specs}
        self.modalities = nn.ModuleDict(
            {spec.name: ModalityPatchEmbed(spec, width, max_patch_size, kind) for spec in specs}
        )

    def token_masks(
        self, x: MaskedSample, patch_size: int, names: Sequence[str]
    ) -> dict[str, Tensor]:
        """Per-token masks of `names`: spatial [B, h, w, T, S], non-spatial [B, S]."""
        return {name: token_mask(x.masks[name], self.specs[name], patch_size) for name in names}

    def forward(
        self, x: MaskedSample, patch_size: int, names: Sequence[str] | None = None
    ) -> TokensAndMasks:
        """Embeds `names` (default: every supported modality present in `x`).

        Returns tokens [B, h, w, T, S, D] (non-spatial [B, S, D]) and the matching token masks,
        modalities in canonical registry order.
        """
        if names is None:
            names = [name for name in x.modality_names if name in self.specs]
        names = modalities.canonical_order(names)
        tokens = {name: self.modalities[name](x.data[name], patch_size) for name in names}
        return TokensAndMasks(tokens=tokens, masks=self.token_masks(x, patch_size, names))
