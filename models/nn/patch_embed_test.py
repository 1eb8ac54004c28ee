"""Flexible patch embeddings: shapes for every patch size, locality, band sets, masks."""

import pytest
import torch

from models.modalities import modalities
from models.modalities.samples import MaskedSample, MaskValue
from models.nn.patch_embed import FlexiPatchEmbed, ModalityPatchEmbed, MultiModalPatchEmbed

S2 = modalities.get("sentinel2_l2a")


@pytest.mark.parametrize("patch_size", range(1, 9))
def test_every_patch_size_gives_one_token_per_patch(patch_size):
    torch.manual_seed(0)
    embed = FlexiPatchEmbed(in_channels=3, width=16)
    x = torch.randn(2, 2 * patch_size, 3 * patch_size, 2, 3)
    assert embed(x, patch_size).shape == (2, 2, 3, 2, 16)


@pytest.mark.parametrize("patch_size", [1, 3, 8])
def test_constant_image_gives_identical_tokens(patch_size):
    """Resizing a constant image keeps it constant, so every token is the same."""
    embed = FlexiPatchEmbed(in_channels=2, width=8)
    x = torch.full((1, 3 * patch_size, 3 * patch_size, 1, 2), 0.7)
    tokens = embed(x, patch_size).reshape(-1, 8)
    torch.testing.assert_close(tokens, tokens[:1].expand_as(tokens), atol=1e-5, rtol=0)


def test_token_at_max_patch_size_sees_only_its_own_patch_and_timestep():
    embed = FlexiPatchEmbed(in_channels=2, width=8)
    x = torch.randn(1, 16, 24, 2, 2)
    before = embed(x, 8)
    x[0, 9, 17, 1, 0] += 5.0  # pixel in patch (row 1, col 2), timestep 1
    changed = (embed(x, 8) - before).abs().amax(dim=-1) > 0
    expected = torch.zeros_like(changed)
    expected[0, 1, 2, 1] = True
    assert torch.equal(changed, expected)


@pytest.mark.parametrize("patch_size", [2, 5, 8])
def test_linear_and_conv_projections_agree_with_matched_weights(patch_size):
    conv = FlexiPatchEmbed(3, 8, kind="conv")
    linear = FlexiPatchEmbed(3, 8, kind="linear")
    with torch.no_grad():
        # Conv weight [D, C, p1, p2] -> Linear over the (p1 p2 c) flattened patch.
        linear.proj.weight.copy_(conv.proj.weight.permute(0, 2, 3, 1).reshape(8, -1))
        linear.proj.bias.copy_(conv.proj.bias)
    x = torch.randn(2, 2 * patch_size, 2 * patch_size, 1, 3)
    torch.testing.assert_close(conv(x, patch_size), linear(x, patch_size), atol=1e-5, rtol=1e-5)


def test_band_set_tokens_depend_only_on_their_bands():
    embed = ModalityPatchEmbed(S2, width=8)
    x = torch.randn(1, 4, 4, 2, 12)
    before = embed(x, 2)
    assert before.shape == (1, 2, 2, 2, 3, 8)
    x[..., 10:] += 3.0  # B01, B09: the third band set
    delta = (embed(x, 2) - before).abs().amax(dim=(0, 1, 2, 3, 5))
    assert delta[0] == 0 and delta[1] == 0 and delta[2] > 0


def test_latlon_is_embedded_by_a_linear_layer_per_band_set():
    embed = ModalityPatchEmbed(modalities.get("latlon"), width=8)
    assert isinstance(embed.band_sets[0], torch.nn.Linear)
    assert embed(torch.randn(3, 2), patch_size=4).shape == (3, 1, 8)


def test_masks_are_read_at_each_patch_top_left_pixel():
    names = ("sentinel1", "latlon")
    embed = MultiModalPatchEmbed([modalities.get(n) for n in names], width=8)
    s1_mask = torch.full((1, 4, 4, 1, 1), MaskValue.ONLINE_ENCODER, dtype=torch.int8)
    s1_mask[0, 2, 0] = MaskValue.DECODER  # top-left of patch (1, 0)
    s1_mask[0, 1, 1] = MaskValue.MISSING  # not a top-left pixel: ignored
    latlon_mask = torch.full((1, 1), MaskValue.TARGET_ONLY, dtype=torch.int8)
    sample = MaskedSample(
        data={"sentinel1": torch.randn(1, 4, 4, 1, 2), "latlon": torch.randn(1, 2)},
        masks={"sentinel1": s1_mask, "latlon": latlon_mask},
        timestamps=torch.zeros(1, 1, 3, dtype=torch.long),
    )
    out = embed(sample, patch_size=2)
    assert out.modality_names == names
    expected = torch.tensor([[MaskValue.ONLINE_ENCODER] * 2, [MaskValue.DECODER, 0]])
    assert torch.equal(out.masks["sentinel1"][0, :, :, 0, 0], expected.to(torch.int8))
    assert torch.equal(out.masks["latlon"], latlon_mask)
    assert out.tokens["sentinel1"].shape == (1, 2, 2, 1, 1, 8)


def test_image_not_divisible_by_patch_size_is_rejected():
    embed = ModalityPatchEmbed(S2, width=8)
    with pytest.raises(ValueError, match="multiples of the patch size"):
        embed(torch.randn(1, 6, 6, 1, 12), patch_size=4)


def test_projection_keeps_pytorch_default_init_and_band_indices_are_not_saved():
    embed = MultiModalPatchEmbed([S2], width=8)
    assert embed.modalities["sentinel2_l2a"].band_sets[0].proj.keep_default_init
    assert not any("band_index" in key for key in embed.state_dict())
