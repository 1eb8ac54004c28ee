"""Per-pixel MLP patch embeddings: the map itself, flexible patch sizes, band dropout wiring."""

from __future__ import annotations

import pytest
import torch

from models.modalities import modalities
from models.modalities.samples import MASK_DTYPE, MaskedSample, MaskValue
from models.nn.band_dropout import BandDropout
from models.nn.patch_embed import resize_to_base_patches
from models.nn.per_pixel_patch_embed import (
    PerPixelFlexiPatchEmbed,
    PerPixelModalityPatchEmbed,
    PerPixelMultiModalPatchEmbed,
)

S2_SINGLE = modalities.SINGLE_BANDSET_TOKENIZATION.spec("sentinel2_l2a")


def _by_hand(embed: PerPixelFlexiPatchEmbed, images: torch.Tensor) -> torch.Tensor:
    """[N, C, h * 8, w * 8] -> [N, h, w, D], one patch and one pixel at a time."""
    n, _, rows, cols = images.shape
    p = embed.max_patch_size
    out = torch.empty(n, rows // p, cols // p, embed.width)
    for i in range(n):
        for r in range(rows // p):
            for c in range(cols // p):
                features = []
                for y in range(p):  # row, then column, then feature: the (p1 p2 f) order
                    for x in range(p):
                        pixel = images[i, :, r * p + y, c * p + x]
                        features.append(torch.relu(embed.pixel_proj(pixel)))
                out[i, r, c] = embed.proj(torch.cat(features))
    return out


def test_projects_each_pixel_then_the_flattened_patch():
    torch.manual_seed(0)
    embed = PerPixelFlexiPatchEmbed(in_channels=5, width=16, hidden_width=3, max_patch_size=4)
    images = torch.randn(2, 5, 8, 12)
    assert torch.allclose(embed.project(images), _by_hand(embed, images), atol=1e-5)


@pytest.mark.parametrize("patch_size", range(1, 9))
def test_any_patch_size_resizes_the_image_to_base_patches_first(patch_size):
    torch.manual_seed(patch_size)
    embed = PerPixelFlexiPatchEmbed(in_channels=4, width=8, hidden_width=6, max_patch_size=8)
    x = torch.randn(2, 3 * patch_size, 2 * patch_size, 2, 4)  # [B, H, W, T, C]
    tokens = embed(x, patch_size)
    assert tokens.shape == (2, 3, 2, 2, 8)
    images = x.permute(0, 3, 4, 1, 2).reshape(4, 4, 3 * patch_size, 2 * patch_size)
    resized = resize_to_base_patches(images, patch_size, 8)
    expected = _by_hand(embed, resized).reshape(2, 2, 3, 2, 8).permute(0, 2, 3, 1, 4)
    assert torch.allclose(tokens, expected, atol=1e-5)


def test_weights_do_not_depend_on_the_patch_size_and_keep_default_init():
    embed = PerPixelFlexiPatchEmbed(in_channels=12, width=128, hidden_width=12)
    assert embed.pixel_proj.weight.shape == (12, 12)
    assert embed.proj.weight.shape == (128, 12 * 8 * 8)
    assert embed.pixel_proj.keep_default_init and embed.proj.keep_default_init


def test_spatial_band_sets_are_per_pixel_and_lat_lon_keeps_its_linear():
    spatial = PerPixelModalityPatchEmbed(S2_SINGLE, width=16, hidden_width=4)
    assert [type(m) for m in spatial.band_sets] == [PerPixelFlexiPatchEmbed]
    latlon = PerPixelModalityPatchEmbed(modalities.get("latlon"), width=16, hidden_width=4)
    assert [type(m) for m in latlon.band_sets] == [torch.nn.Linear]
    assert latlon(torch.randn(3, 2), patch_size=2).shape == (3, 1, 16)


def _sample(names: tuple[str, ...], batch: int = 4, size: int = 4) -> MaskedSample:
    generator = torch.Generator().manual_seed(0)
    data, masks = {}, {}
    for spec in modalities.SINGLE_BANDSET_TOKENIZATION.specs(names):
        steps = 2 if spec.is_multitemporal else 1
        data[spec.name] = torch.rand(batch, size, size, steps, spec.num_bands, generator=generator)
        masks[spec.name] = torch.full(
            (batch, size, size, steps, spec.num_band_sets),
            MaskValue.ONLINE_ENCODER,
            dtype=MASK_DTYPE,
        )
    timestamps = torch.tensor([[15, 0, 2020], [15, 1, 2020]]).expand(batch, 2, 3)
    return MaskedSample(data=data, masks=masks, timestamps=timestamps)


def test_band_dropout_acts_only_on_its_modalities_once_enabled_in_train_mode():
    names = ("sentinel2_l2a", "sentinel1", "landsat")
    specs = modalities.SINGLE_BANDSET_TOKENIZATION.specs(names)
    embed = PerPixelMultiModalPatchEmbed(
        specs,
        width=16,
        hidden_width=4,
        band_dropout_rate=0.9,
        random_band_dropout=False,
        band_dropout_modalities=("sentinel2_l2a", "landsat"),
    ).train()
    assert set(embed.band_dropouts()) == {"sentinel2_l2a", "landsat"}
    x = _sample(names)
    before = embed(x, patch_size=2).tokens
    torch.manual_seed(0)
    again = embed(x, patch_size=2).tokens
    for name in names:
        assert torch.equal(before[name], again[name])  # disabled: deterministic, no dropout
    embed.enable_band_dropout()
    after = embed(x, patch_size=2).tokens
    assert torch.equal(after["sentinel1"], before["sentinel1"])
    assert not torch.equal(after["sentinel2_l2a"], before["sentinel2_l2a"])
    assert not torch.equal(after["landsat"], before["landsat"])
    embed.eval()
    for name, tokens in embed(x, patch_size=2).tokens.items():
        assert torch.equal(tokens, before[name])


def test_band_dropout_zeroes_the_bands_before_the_per_pixel_mlp():
    embed = PerPixelModalityPatchEmbed(S2_SINGLE, width=8, hidden_width=4)
    embed.band_dropout = BandDropout(0.5)
    embed.band_dropout.enable()
    keep = torch.zeros(2, 12, dtype=torch.bool)
    keep[0, :3] = True
    keep[1, 5] = True
    embed.band_dropout.draw_keep_mask = lambda batch, bands, device: keep
    x = torch.rand(2, 8, 8, 1, 12)
    expected = embed.band_sets[0](x * keep[:, None, None, None, :], 8)
    assert torch.equal(embed.train()(x, 8)[..., 0, :], expected)


def test_rejects_band_dropout_on_an_unsupported_modality():
    specs = modalities.SINGLE_BANDSET_TOKENIZATION.specs(("sentinel2_l2a",))
    with pytest.raises(ValueError, match=r"band_dropout_modalities \['landsat'\]"):
        PerPixelMultiModalPatchEmbed(
            specs, 8, 4, band_dropout_rate=0.2, band_dropout_modalities=("landsat",)
        )
