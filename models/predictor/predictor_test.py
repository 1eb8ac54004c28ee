"""Predictor: config, output contract, cross-attention-only decoding, padding independence."""

import pytest
import torch

from models.modalities import modalities
from models.modalities.samples import MaskValue, TokensAndMasks
from models.nn.testing import random_timestamps
from models.predictor.predictor import Predictor, PredictorConfig

NAMES = ("sentinel2_l2a", "latlon", "worldcover")
ENCODER_WIDTH = 32


def _predictor(seed=0, **overrides) -> Predictor:
    torch.manual_seed(seed)
    fields = dict(
        width=16, depth=2, num_heads=2, encoder_width=ENCODER_WIDTH, supported_modalities=NAMES
    )
    fields.update(overrides)
    return PredictorConfig(**fields).build()


def _latent(batch=2, steps=2, seed=0) -> TokensAndMasks:
    """Random encoder tokens and masks with every mask value present."""
    generator = torch.Generator().manual_seed(seed)
    shapes = {"sentinel2_l2a": (batch, 2, 2, steps, 3), "latlon": (batch, 1),
              "worldcover": (batch, 2, 2, 1, 1)}  # fmt: skip
    tokens, masks = {}, {}
    for name, shape in shapes.items():
        tokens[name] = torch.randn(*shape, ENCODER_WIDTH, generator=generator)
        masks[name] = torch.randint(0, 4, shape, generator=generator).to(torch.int8)
    masks["sentinel2_l2a"].view(batch, -1)[:, :2] = torch.tensor(
        [MaskValue.ONLINE_ENCODER, MaskValue.DECODER], dtype=torch.int8
    )
    return TokensAndMasks(tokens=tokens, masks=masks)


def _timestamps(batch=2, steps=2):
    return random_timestamps(batch, steps, torch.Generator().manual_seed(1))


def _replace(latent, name, where, value):
    tokens = dict(latent.tokens)
    tokens[name] = torch.where(where[..., None], value, tokens[name])
    return TokensAndMasks(tokens=tokens, masks=latent.masks)


def test_config_defaults_predictions_to_the_encoder_width_and_names_bad_fields():
    assert PredictorConfig(width=16, depth=1, num_heads=2, encoder_width=48).output_width == 48
    with pytest.raises(ValueError, match="PredictorConfig.num_heads must be positive"):
        PredictorConfig(width=16, depth=1, num_heads=3, encoder_width=48)
    with pytest.raises(ValueError, match="PredictorConfig.supported_modalities: unknown"):
        PredictorConfig(width=16, depth=1, num_heads=2, encoder_width=8, supported_modalities="x")


def test_predictions_have_token_shapes_at_the_output_width_and_keep_the_masks():
    latent = _latent()
    out = _predictor(output_width=24)(latent, _timestamps(), patch_size=2)
    assert out.modality_names == modalities.canonical_order(NAMES)
    assert out.tokens["sentinel2_l2a"].shape == (2, 2, 2, 2, 3, 24)
    assert out.tokens["latlon"].shape == (2, 1, 24)
    assert all(torch.equal(out.masks[n], latent.masks[n]) for n in NAMES)


def test_only_visible_tokens_inform_the_predictions():
    predictor = _predictor()
    latent = _latent()
    before = predictor(latent, _timestamps(), patch_size=2)
    changed = latent
    for name in NAMES:
        hidden = latent.masks[name] != MaskValue.ONLINE_ENCODER
        changed = _replace(changed, name, hidden, torch.tensor(7.0))
    after = predictor(changed, _timestamps(), patch_size=2)
    for name in NAMES:
        decoder = latent.masks[name] == MaskValue.DECODER
        torch.testing.assert_close(after.tokens[name][decoder], before.tokens[name][decoder])
    s2_visible = latent.masks["sentinel2_l2a"] == MaskValue.ONLINE_ENCODER
    changed = _replace(latent, "sentinel2_l2a", s2_visible, torch.tensor(3.0))
    moved = predictor(changed, _timestamps(), patch_size=2).tokens["sentinel2_l2a"]
    decoder = latent.masks["sentinel2_l2a"] == MaskValue.DECODER
    assert not torch.allclose(moved[decoder], before.tokens["sentinel2_l2a"][decoder])


def test_queries_do_not_attend_to_each_other():
    """Turning other DECODER tokens into TARGET_ONLY leaves a query's prediction unchanged."""
    predictor = _predictor()
    latent = _latent()
    before = predictor(latent, _timestamps(), patch_size=2).tokens["sentinel2_l2a"]
    masks = {name: mask.clone() for name, mask in latent.masks.items()}
    flat = masks["sentinel2_l2a"].view(2, -1)
    keep = flat[:, 1].clone()  # the query we follow (set to DECODER in _latent)
    flat[flat == MaskValue.DECODER] = MaskValue.TARGET_ONLY
    flat[:, 1] = keep
    for name in ("latlon", "worldcover"):
        masks[name][masks[name] == MaskValue.DECODER] = MaskValue.TARGET_ONLY
    after = predictor(TokensAndMasks(latent.tokens, masks), _timestamps(), patch_size=2)
    after_s2 = after.tokens["sentinel2_l2a"]
    torch.testing.assert_close(
        after_s2.reshape(2, -1, ENCODER_WIDTH)[:, 1],
        before.reshape(2, -1, ENCODER_WIDTH)[:, 1],
        atol=1e-5,
        rtol=0,
    )


def test_the_context_is_not_updated_by_the_blocks():
    predictor = _predictor()
    latent = _latent()
    before = predictor(latent, _timestamps(), patch_size=2)
    with torch.no_grad():
        for block in predictor.blocks:
            block.mlp.fc2.bias.add_(torch.randn_like(block.mlp.fc2.bias))
    after = predictor(latent, _timestamps(), patch_size=2)
    for name in NAMES:
        visible = latent.masks[name] == MaskValue.ONLINE_ENCODER
        decoder = latent.masks[name] == MaskValue.DECODER
        torch.testing.assert_close(after.tokens[name][visible], before.tokens[name][visible])
        if decoder.any():
            assert not torch.allclose(after.tokens[name][decoder], before.tokens[name][decoder])


def test_padding_does_not_change_a_samples_predictions():
    predictor = _predictor().eval()
    latent = _latent(batch=2, seed=4)
    masks = {name: mask.clone() for name, mask in latent.masks.items()}
    masks["sentinel2_l2a"][1, :, :, 1] = MaskValue.MISSING  # sample 1 gets fewer tokens
    latent = TokensAndMasks(latent.tokens, masks)
    timestamps = _timestamps()
    batched = predictor(latent, timestamps, patch_size=2)
    alone_input = TokensAndMasks(
        {n: t[1:] for n, t in latent.tokens.items()}, {n: m[1:] for n, m in masks.items()}
    )
    alone = predictor(alone_input, timestamps[1:], patch_size=2)
    for name in NAMES:
        torch.testing.assert_close(batched.tokens[name][1:], alone.tokens[name], atol=1e-5, rtol=0)


def test_mask_token_starts_at_zero_and_every_parameter_gets_a_gradient():
    predictor = _predictor()
    assert torch.all(predictor.mask_token == 0)
    out = predictor(_latent(), _timestamps(), patch_size=2)
    sum(t.sum() for t in out.tokens.values()).backward()
    for name, parameter in predictor.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


def test_a_sample_without_visible_tokens_gives_finite_predictions():
    predictor = _predictor()
    latent = _latent()
    masks = {name: mask.clone() for name, mask in latent.masks.items()}
    for mask in masks.values():
        mask[0][mask[0] == MaskValue.ONLINE_ENCODER] = MaskValue.TARGET_ONLY
    out = predictor(TokensAndMasks(latent.tokens, masks), _timestamps(), patch_size=2)
    assert all(torch.isfinite(t).all() for t in out.tokens.values())
