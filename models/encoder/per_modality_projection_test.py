"""The per-modality projection encoder variant: structure, gradients and the order of steps."""

import torch

from models.encoder.encoder import Encoder, EncoderConfig
from models.encoder.per_modality_projection import (
    EncoderWithPerModalityProjection,
    EncoderWithPerModalityProjectionConfig,
)
from models.modalities.samples import MaskValue
from models.nn.testing import random_masked_sample

NAMES = ("sentinel2_l2a", "sentinel1", "latlon", "worldcover")
FIELDS = dict(width=32, depth=2, num_heads=2, drop_path=0.0, supported_modalities=NAMES)


def _variant(seed=0) -> EncoderWithPerModalityProjection:
    torch.manual_seed(seed)
    return EncoderWithPerModalityProjectionConfig(**FIELDS).build()


def _sample():
    return random_masked_sample(batch=2, size=4, steps=2, patch_size=2, names=NAMES)


def test_config_builds_the_variant_with_one_transform_per_encodable_modality():
    encoder = _variant()
    assert type(encoder) is EncoderWithPerModalityProjection
    assert isinstance(encoder.config, EncoderConfig)
    assert tuple(encoder.modality_projections) == ("sentinel2_l2a", "sentinel1", "latlon")
    assert all(p.weight.shape == (32, 32) for p in encoder.modality_projections.values())


def test_forward_shapes_match_the_base_encoder():
    out = _variant()(_sample(), patch_size=2)
    assert out.tokens_and_masks.tokens["sentinel2_l2a"].shape == (2, 2, 2, 2, 3, 32)
    assert out.tokens_and_masks.tokens["worldcover"].shape == (2, 2, 2, 1, 1, 32)
    assert out.pooled.shape == (2, 32)


def test_gradients_reach_every_per_modality_parameter():
    encoder = _variant()
    out = encoder(_sample(), patch_size=2)
    (out.pooled.sum() + out.tokens_and_masks.tokens["sentinel1"].pow(2).sum()).backward()
    for name, parameter in encoder.modality_projections.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_identity_transforms_reproduce_the_base_encoder_on_visible_tokens():
    torch.manual_seed(0)
    base = Encoder(EncoderConfig(**FIELDS))
    variant = _variant(seed=1)
    missing, unexpected = variant.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(key.startswith("modality_projections.") for key in missing)
    sample = _sample()
    expected, actual = base(sample, patch_size=2), variant(sample, patch_size=2)
    for name, tokens, mask in expected.tokens_and_masks.items():
        visible = mask == MaskValue.ONLINE_ENCODER
        torch.testing.assert_close(actual.tokens_and_masks.tokens[name], tokens)
        assert torch.all(actual.tokens_and_masks.tokens[name][~visible] == 0)
    torch.testing.assert_close(actual.pooled, expected.pooled)


def test_each_transform_sees_its_full_restored_grid_and_the_norm_comes_after():
    encoder = _variant()
    with torch.no_grad():  # non-identity transforms, so the order matters
        for projection in encoder.modality_projections.values():
            projection.weight.add_(0.3 * torch.randn_like(projection.weight))
            projection.bias.add_(torch.randn_like(projection.bias))
    seen = {}
    for name, projection in encoder.modality_projections.items():
        projection.register_forward_hook(
            lambda module, inputs, output, name=name: seen.update({name: (inputs[0], output)})
        )
    sample = _sample()
    out = encoder(sample, patch_size=2).tokens_and_masks
    for name, (transform_in, transform_out) in seen.items():
        tokens, mask = out.tokens[name], out.masks[name]
        assert transform_in.shape == tokens.shape  # every position: [B, h, w, T, S, D]
        visible = mask == MaskValue.ONLINE_ENCODER
        assert torch.all(transform_in[~visible] == 0)  # removed tokens restored as zeros
        assert torch.all(transform_in[visible].abs().sum(-1) > 0)
        normed = encoder.norm(transform_out)
        torch.testing.assert_close(tokens[visible], normed[visible])
