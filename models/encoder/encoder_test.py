"""Encoder: config validation, output contract, masking, batch independence, fast pass."""

import dataclasses

import pytest
import torch

from models.encoder.encoder import Encoder, EncoderConfig
from models.modalities import modalities
from models.modalities.samples import MaskedSample, MaskValue
from models.nn.testing import random_masked_sample, select, with_missing_timestep

MAPS = ("worldcover", "openstreetmap_raster")
NAMES = ("sentinel2_l2a", "sentinel1", "latlon", *MAPS)


def _config(**overrides):
    fields = dict(width=32, depth=2, num_heads=2, drop_path=0.0, supported_modalities=NAMES)
    fields.update(overrides)
    return EncoderConfig(**fields)


def _encoder(seed=0, **overrides) -> Encoder:
    torch.manual_seed(seed)
    return _config(**overrides).build()


def _sample(**kwargs) -> MaskedSample:
    kwargs.setdefault("names", NAMES)
    return random_masked_sample(**kwargs)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"width": 40}, "width must be a positive multiple of 16"),
        ({"num_heads": 5}, "num_heads must be positive and divide width=32"),
        ({"drop_path": 1.0}, r"drop_path must be in \[0, 1\)"),
        ({"supported_modalities": ("sentinel3",)}, "supported_modalities: unknown modality"),
        ({"min_patch_size": 9}, "min_patch_size must be in"),
        ({"patch_embed": "mlp"}, "patch_embed must be one of"),
        ({"supported_modalities": MAPS}, "needs at least one modality to encode"),
        ({"decode_only_modalities": ("cdl",)}, r"decode_only_modalities \['cdl'\] are not in"),
    ],
)
def test_config_errors_name_the_field_and_allowed_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        _config(**overrides)


def test_registry_decode_only_flags_are_the_default():
    config = _config()
    assert config.decode_only_modalities == MAPS
    assert config.encodable_modalities == ("sentinel2_l2a", "sentinel1", "latlon")
    assert _config(decode_only_modalities=()).encodable_modalities == modalities.canonical_order(
        NAMES
    )


def test_output_has_every_modality_with_token_shapes_and_a_pooled_vector():
    encoder = _encoder()
    out = encoder(_sample(batch=2, size=4, steps=3, patch_size=2), patch_size=2)
    tokens = out.tokens_and_masks.tokens
    assert out.tokens_and_masks.modality_names == modalities.canonical_order(NAMES)
    assert tokens["sentinel2_l2a"].shape == (2, 2, 2, 3, 3, 32)
    assert tokens["worldcover"].shape == (2, 2, 2, 1, 1, 32)
    assert tokens["latlon"].shape == (2, 1, 32)
    assert out.tokens_and_masks.masks["sentinel2_l2a"].shape == (2, 2, 2, 3, 3)
    assert out.pooled.shape == (2, 32)


def test_only_online_encoder_tokens_are_nonzero_and_maps_are_never_encoded():
    encoder = _encoder()
    out = encoder(_sample(), patch_size=2).tokens_and_masks
    for name, tokens, mask in out.items():
        visible = mask == MaskValue.ONLINE_ENCODER
        assert torch.all(tokens[~visible] == 0), name
        assert torch.all(tokens[visible].abs().sum(-1) > 0), name
    for name in MAPS:
        assert torch.all(out.tokens[name] == 0)
        assert all(not p.requires_grad for p in encoder.patch_embed.modalities[name].parameters())


def test_hidden_tokens_do_not_influence_visible_ones():
    """At patch size 8 nothing is resized, so a token's pixels are exactly its patch's."""
    encoder = _encoder()
    sample = _sample(size=16, patch_size=8)
    before = encoder(sample, patch_size=8).tokens_and_masks.tokens
    spec = modalities.get("sentinel2_l2a")
    band_set_of_band = [s for s, bands in enumerate(spec.band_set_indices()) for _ in bands]
    hidden = sample.masks["sentinel2_l2a"] != MaskValue.ONLINE_ENCODER  # [B, H, W, T, S]
    data = dict(sample.data)
    data["sentinel2_l2a"] = data["sentinel2_l2a"] + 10.0 * hidden[..., band_set_of_band]
    changed = MaskedSample(data=data, masks=sample.masks, timestamps=sample.timestamps)
    after = encoder(changed, patch_size=8).tokens_and_masks.tokens
    assert hidden.any() and (~hidden).any()
    for name in NAMES:
        torch.testing.assert_close(after[name], before[name])


@pytest.mark.parametrize("train", [False, True])
def test_padding_does_not_change_a_samples_embedding(train):
    """Sample 1 misses a timestep, so in the batch its row is padded to sample 0's length."""
    encoder = _encoder().train(train)
    batch = with_missing_timestep(_sample(batch=2, steps=3, seed=3), index=1, step=2)
    batched = encoder(batch, patch_size=2)
    alone = encoder(select(batch, [1]), patch_size=2)
    for name in NAMES:
        torch.testing.assert_close(
            batched.tokens_and_masks.tokens[name][1:],
            alone.tokens_and_masks.tokens[name],
            atol=1e-5,
            rtol=0,
        )
    torch.testing.assert_close(batched.pooled[1:], alone.pooled, atol=1e-5, rtol=0)


def test_fast_pass_equals_the_normal_pass_when_everything_is_visible():
    encoder = _encoder().eval()
    sample = _sample(names=("sentinel2_l2a", "latlon"), encoder_ratio=1.0)
    assert all(torch.all(m == MaskValue.ONLINE_ENCODER) for m in sample.masks.values())
    normal = encoder(sample, patch_size=2)
    fast = encoder(sample, patch_size=2, fast_pass=True)
    for name in ("sentinel2_l2a", "latlon"):
        torch.testing.assert_close(
            fast.tokens_and_masks.tokens[name], normal.tokens_and_masks.tokens[name]
        )
    torch.testing.assert_close(fast.pooled, normal.pooled)


def test_pooled_vector_is_a_linear_map_of_the_mean_visible_token():
    encoder = _encoder()
    out = encoder(_sample(), patch_size=2)
    encoded = {n: out.tokens_and_masks.tokens[n] for n in encoder.config.encodable_modalities}
    masks = {n: out.tokens_and_masks.masks[n] for n in encoded}
    flat = torch.cat([t.reshape(2, -1, 32) for t in encoded.values()], 1)
    visible = torch.cat([m.reshape(2, -1) for m in masks.values()], 1) == MaskValue.ONLINE_ENCODER
    mean = (flat * visible[..., None]).sum(1) / visible.sum(1, keepdim=True)
    torch.testing.assert_close(out.pooled, encoder.pooled_projection(mean))


def test_token_order_does_not_depend_on_dict_insertion_order():
    encoder = _encoder()
    sample = _sample()
    reversed_sample = MaskedSample(
        data=dict(reversed(sample.data.items())),
        masks=dict(reversed(sample.masks.items())),
        timestamps=sample.timestamps,
    )
    a = encoder(sample, patch_size=2).tokens_and_masks
    b = encoder(reversed_sample, patch_size=2).tokens_and_masks
    assert a.modality_names == b.modality_names
    assert all(torch.equal(a.tokens[n], b.tokens[n]) for n in NAMES)


def test_embed_patches_only_returns_raw_projections_of_every_modality():
    encoder = _encoder()
    sample = _sample()
    raw = encoder.embed_patches_only(sample, patch_size=2)
    assert raw.modality_names == modalities.canonical_order(NAMES)
    expected = encoder.patch_embed.modalities["worldcover"](sample.data["worldcover"], 2)
    assert torch.equal(raw.tokens["worldcover"], expected)


def test_every_trainable_parameter_gets_a_gradient_and_drop_path_is_random_in_training():
    encoder = _encoder(drop_path=0.5).train()
    sample = _sample()
    out = encoder(sample, patch_size=2)
    (out.pooled.sum() + sum(t.sum() for t in out.tokens_and_masks.tokens.values())).backward()
    for name, parameter in encoder.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    torch.manual_seed(1)
    first = encoder(sample, patch_size=2).pooled
    torch.manual_seed(2)
    assert not torch.equal(first, encoder(sample, patch_size=2).pooled)


def test_patch_size_outside_the_configured_range_is_rejected():
    encoder = _encoder(min_patch_size=2, max_patch_size=4)
    with pytest.raises(ValueError, match=r"patch_size must be in \[2, 4\]"):
        encoder(_sample(), patch_size=1)


def test_linear_patch_embedding_config_builds_and_runs():
    encoder = _encoder(patch_embed="linear")
    out = encoder(_sample(), patch_size=1)
    assert out.tokens_and_masks.tokens["sentinel1"].shape == (2, 4, 4, 2, 1, 32)


def test_config_is_a_plain_dataclass_that_round_trips_through_asdict():
    config = _config(tokenization=modalities.SINGLE_BANDSET_TOKENIZATION)
    values = dataclasses.asdict(config)
    values["tokenization"] = modalities.Tokenization(**values["tokenization"])
    assert EncoderConfig(**values) == config
    out = config.build()(_sample(tokenization=config.tokenization), patch_size=2)
    assert out.tokens_and_masks.tokens["sentinel2_l2a"].shape[-2] == 1
