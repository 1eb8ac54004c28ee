"""EncoderV12: v1.1 exactly when the v1.2 options are off; RoPE sees relative positions only;
register tokens join attention but never the outputs or the pooled vector; qk-norm; config."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.encoder.v1_1 import EncoderV11Config
from models.encoder.v1_2 import EncoderV12, EncoderV12Config
from models.modalities import modalities
from models.modalities.samples import MaskValue
from models.nn import rope, sequence
from models.nn.testing import random_masked_sample

NAMES = ("sentinel2_l2a", "sentinel1", "landsat", "latlon", "worldcover")
SINGLE = modalities.SINGLE_BANDSET_TOKENIZATION


def _encoder(seed: int = 0, **overrides) -> EncoderV12:
    fields = dict(width=32, depth=2, num_heads=2, drop_path=0.0, supported_modalities=NAMES)
    fields.update(overrides)
    torch.manual_seed(seed)
    return EncoderV12Config(**fields).build().train()


def _sample(seed: int = 0, **kwargs):
    return random_masked_sample(names=NAMES, tokenization=SINGLE, seed=seed, steps=3, **kwargs)


def test_defaults_are_the_v1_2_recipe_rope_3d_mixed_without_registers_or_qk_norm():
    config = EncoderV12Config(width=32, depth=1, num_heads=2)
    assert isinstance(config, EncoderV11Config)
    assert config.rope == rope.RopeConfig(kind="rope_3d_mixed", mixed_base=1e4)
    assert config.rope.temporal_scale == pytest.approx(1 / 30)
    assert (config.num_register_tokens, config.qk_norm) == (0, False)
    assert config.tokenization == SINGLE


def test_without_rope_registers_and_qk_norm_it_is_the_v1_1_encoder():
    ours = _encoder(rope=None)
    fields = {f.name: getattr(ours.config, f.name) for f in dataclasses.fields(EncoderV11Config)}
    v1_1 = EncoderV11Config(**fields).build().train()
    v1_1.load_state_dict(ours.state_dict(), strict=True)
    x = _sample()
    a, b = ours(x, patch_size=2), v1_1(x, patch_size=2)
    torch.testing.assert_close(a.pooled, b.pooled, atol=1e-6, rtol=0)
    for name in a.tokens_and_masks.tokens:
        torch.testing.assert_close(
            a.tokens_and_masks.tokens[name], b.tokens_and_masks.tokens[name], atol=1e-6, rtol=0
        )


SPATIAL = ("sentinel2_l2a", "sentinel1", "landsat", "worldcover")


@pytest.mark.parametrize("kind", rope.ROPE_KINDS)
def test_rope_encoder_sees_time_only_through_offsets_and_months(kind):
    # Spatial modalities only: latlon's tokens sit at the origin, a fixed time.
    encoder = _encoder(rope=rope.RopeConfig(kind=kind), supported_modalities=SPATIAL)
    x = random_masked_sample(names=SPATIAL, tokenization=SINGLE, steps=3)
    later = dataclasses.replace(x, timestamps=x.timestamps + torch.tensor([0, 0, 3]))
    a, b = encoder(x, patch_size=2), encoder(later, patch_size=2)
    torch.testing.assert_close(a.pooled, b.pooled, atol=2e-5, rtol=0)  # 3 years later: same
    if rope.is_3d(kind):  # one timestep a year off: a different temporal offset
        moved = x.timestamps.clone()
        moved[:, 0, 2] += 1
        c = encoder(dataclasses.replace(x, timestamps=moved), patch_size=2)
        assert (a.pooled - c.pooled).abs().max() > 1e-4


def test_register_tokens_take_part_in_attention_but_not_in_tokens_or_pooled():
    with_registers = _encoder(num_register_tokens=3)
    assert with_registers.register_tokens.shape == (3, 32)
    without = _encoder(num_register_tokens=0)
    state = {k: v for k, v in with_registers.state_dict().items() if k != "register_tokens"}
    without.load_state_dict(state, strict=True)
    x = _sample()
    out = with_registers(x, patch_size=2)
    # Same shapes as without registers, but different values: the registers were attended to.
    plain = without(x, patch_size=2)
    for name, tokens in out.tokens_and_masks.tokens.items():
        assert tokens.shape == plain.tokens_and_masks.tokens[name].shape
    assert (out.pooled - plain.pooled).abs().max() > 1e-4
    # The pooled vector is the projection of the mean of the visible tokens only.
    tokens, mask = out.tokens_and_masks.flatten()
    visible = (mask == MaskValue.ONLINE_ENCODER).float()[:, :, None]
    mean = (tokens * visible).sum(1) / visible.sum(1)
    torch.testing.assert_close(out.pooled, with_registers.pooled_projection(mean))
    out.pooled.sum().backward()
    assert with_registers.register_tokens.grad.abs().sum() > 0


def test_a_sample_with_no_visible_token_still_runs_with_registers():
    encoder = _encoder(num_register_tokens=2)
    x = _sample()
    masks = {
        name: torch.where(m == MaskValue.ONLINE_ENCODER, MaskValue.TARGET_ONLY, m)
        for name, m in x.masks.items()
    }
    out = encoder(dataclasses.replace(x, masks=masks), patch_size=2)
    assert torch.isfinite(out.pooled).all()
    for tokens in out.tokens_and_masks.tokens.values():
        assert torch.equal(tokens, torch.zeros_like(tokens))


def test_qk_norm_adds_a_layernorm_per_head_to_every_block():
    encoder = _encoder(qk_norm=True)
    names = {n for n, _ in encoder.named_parameters() if "_norm" in n}
    assert names == {
        f"blocks.{j}.attn.{qk}_norm.{p}" for j in (0, 1) for qk in "qk" for p in ("weight", "bias")
    }
    assert encoder.blocks[0].attn.q_norm.normalized_shape == (16,)
    out = encoder(_sample(), patch_size=2)
    out.pooled.sum().backward()
    assert encoder.blocks[1].attn.k_norm.weight.grad.abs().sum() > 0


def test_mixed_rope_frequencies_are_per_block_parameters_that_learn():
    encoder = _encoder()
    encoder(_sample(), patch_size=2).pooled.sum().backward()
    for block in encoder.blocks:
        assert block.attn.rope.freqs.shape == (3, 2, 8)
        assert block.attn.rope.freqs.grad.abs().sum() > 0
    assert not torch.equal(encoder.blocks[0].attn.rope.freqs, encoder.blocks[1].attn.rope.freqs)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"width": 48, "num_heads": 8}, "head dim divisible by 4"),  # head dim 6
        ({"num_register_tokens": -1}, "num_register_tokens must be >= 0"),
        ({"rope": "rope_3d"}, "rope must be a RopeConfig or None"),
    ],
)
def test_bad_configs_get_one_line_errors(overrides, message):
    fields = dict(width=32, depth=1, num_heads=2, supported_modalities=NAMES)
    fields.update(overrides)
    with pytest.raises(ValueError, match=message):
        EncoderV12Config(**fields)


def test_running_the_rope_blocks_without_positions_is_refused_with_the_fix():
    encoder = _encoder()
    packed = sequence.pack(torch.randn(1, 3, 32), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="pass a PositionedTokens"):
        encoder.run_blocks(packed)
    plain = _encoder(rope=None)
    assert plain.run_blocks(packed).shape == (1, 3, 32)  # without RoPE no position is needed
