"""EncoderV11: config, one token per patch for S2 and Landsat, v1 behaviour otherwise, band
dropout off until enabled."""

from __future__ import annotations

import pytest
import torch

from models.encoder.encoder import EncoderConfig
from models.encoder.v1_1 import EncoderV11, EncoderV11Config
from models.modalities import modalities
from models.modalities.samples import MaskValue
from models.nn.per_pixel_patch_embed import PerPixelFlexiPatchEmbed
from models.nn.testing import random_masked_sample

NAMES = ("sentinel2_l2a", "sentinel1", "landsat", "latlon", "worldcover")
SINGLE = modalities.SINGLE_BANDSET_TOKENIZATION


def _config(**overrides) -> EncoderV11Config:
    fields = dict(width=32, depth=2, num_heads=2, drop_path=0.0, supported_modalities=NAMES)
    fields.update(overrides)
    return EncoderV11Config(**fields)


def _encoder(seed: int = 0, **overrides) -> EncoderV11:
    torch.manual_seed(seed)
    return _config(**overrides).build()


def _sample(seed: int = 0, **kwargs):
    return random_masked_sample(names=NAMES, tokenization=SINGLE, seed=seed, **kwargs)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"patch_embed": "conv"}, "patch_embed must be 'linear'"),
        ({"pixel_hidden_width": 0}, "pixel_hidden_width must be >= 1 or None"),
        ({"band_dropout_rate": 1.0}, r"band_dropout_rate must be in \[0, 1\)"),
        ({"band_dropout_modalities": "landsat"}, "not the string 'landsat'"),
        ({"band_dropout_modalities": ("cdl",)}, r"band_dropout_modalities \['cdl'\] are not in"),
        ({"width": 40}, "width must be a positive multiple of 16"),  # v1's checks still run
    ],
)
def test_config_errors_name_the_field_and_the_fix(overrides, message):
    with pytest.raises(ValueError, match=message):
        _config(**overrides)


def test_defaults_are_the_v1_1_recipe():
    config = _config()
    assert config.tokenization == SINGLE
    assert config.patch_embed == "linear"
    assert config.band_dropout_rate == 0.2 and config.random_band_dropout
    assert config.band_dropout_modalities == ("sentinel2_l2a", "landsat")


@pytest.mark.parametrize("width, hidden", [(128, 12), (192, 64), (768, 64)])
def test_pixel_hidden_width_follows_the_released_size_unless_set(width, hidden):
    config = _config(width=width, num_heads=8 if width == 128 else 12)
    assert config.resolved_pixel_hidden_width == hidden
    assert _config(pixel_hidden_width=7).resolved_pixel_hidden_width == 7


def test_s2_and_landsat_give_one_token_per_patch_and_timestep():
    encoder = _encoder()
    out = encoder(_sample(batch=2, size=4, steps=3, patch_size=2), patch_size=2)
    tokens = out.tokens_and_masks.tokens
    assert tokens["sentinel2_l2a"].shape == (2, 2, 2, 3, 1, 32)
    assert tokens["landsat"].shape == (2, 2, 2, 3, 1, 32)
    assert tokens["sentinel1"].shape == (2, 2, 2, 3, 1, 32)
    assert tokens["latlon"].shape == (2, 1, 32)
    assert out.pooled.shape == (2, 32)


def test_spatial_band_sets_use_the_per_pixel_mlp_and_maps_stay_frozen():
    encoder = _encoder()
    s2 = encoder.patch_embed.modalities["sentinel2_l2a"].band_sets[0]
    assert isinstance(s2, PerPixelFlexiPatchEmbed)
    assert s2.pixel_proj.weight.shape == (64, 12)  # width 32 -> the default hidden width 64
    assert not any(
        p.requires_grad for p in encoder.patch_embed.modalities["worldcover"].parameters()
    )
    assert all(p.requires_grad for p in encoder.patch_embed.modalities["landsat"].parameters())


def test_state_dict_is_v1_plus_the_per_pixel_layers():
    v1 = EncoderConfig(
        width=32,
        depth=2,
        num_heads=2,
        supported_modalities=NAMES,
        tokenization=SINGLE,
        patch_embed="linear",
    ).build()
    ours = _encoder().state_dict()
    extra = sorted(set(ours) - set(v1.state_dict()))
    assert set(v1.state_dict()) <= set(ours)
    spatial = ("sentinel2_l2a", "sentinel1", "landsat", "worldcover")
    assert extra == sorted(
        f"patch_embed.modalities.{name}.band_sets.0.pixel_proj.{part}"
        for name in spatial
        for part in ("weight", "bias")
    )


@pytest.mark.parametrize("patch_size", range(1, 9))
def test_every_patch_size_encodes_only_visible_tokens(patch_size):
    encoder = _encoder()
    sample = _sample(batch=2, size=2 * patch_size, steps=2, patch_size=patch_size)
    out = encoder(sample, patch_size=patch_size).tokens_and_masks
    for name, tokens, mask in out.items():
        visible = mask == MaskValue.ONLINE_ENCODER
        assert torch.all(tokens[~visible] == 0), name
        assert torch.all(tokens[visible].abs().sum(-1) > 0), name


def test_band_dropout_is_off_until_enabled_and_then_seeded():
    encoder = _encoder().train()
    sample = _sample()
    first = encoder(sample, patch_size=2).pooled
    assert torch.equal(encoder(sample, patch_size=2).pooled, first)  # off: deterministic
    encoder.enable_band_dropout()
    torch.manual_seed(3)
    dropped = encoder(sample, patch_size=2).pooled
    assert not torch.allclose(dropped, first)
    torch.manual_seed(3)
    assert torch.equal(encoder(sample, patch_size=2).pooled, dropped)
    encoder.eval()
    assert torch.equal(encoder(sample, patch_size=2).pooled, first)


def test_a_zero_band_dropout_rate_builds_no_dropout_and_enabling_changes_nothing():
    encoder = _encoder(band_dropout_rate=0.0).train()
    assert not encoder.patch_embed.band_dropouts()
    sample = _sample()
    before = encoder(sample, patch_size=2).pooled
    encoder.enable_band_dropout()
    assert torch.equal(encoder(sample, patch_size=2).pooled, before)
