"""`modality_cross_space`, `modality_cross_time`, `modality_cross_space_time`: a structured
first stage, then per-sample encoded and decoded band sets."""

import pytest
import torch

from models.masking.modality_cross_axes import (
    ModalityCrossSpaceMaskingConfig,
    ModalityCrossSpaceTimeMaskingConfig,
    ModalityCrossTimeMaskingConfig,
)
from models.masking.testing import count, tiny_sample
from models.modalities import modalities
from models.modalities.samples import MaskValue

ENC, TGT, DEC, MIS = (int(v) for v in MaskValue)
ENCODABLE = ("sentinel2_l2a", "sentinel1", "landsat")
MAPS = modalities.TRAINING_MODALITIES[3:]


def _seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def _constant_over_time(mask):
    """[B, H, W, T, S]: per (sample, position, band set) one value at every timestep."""
    return bool((mask == mask[:, :, :, :1]).all())


def _constant_over_space(mask):
    return bool((mask == mask[:, :1, :1]).all())


def _band_sets_with_both_roles(masks, b):
    return sum(
        bool((mask[b, ..., s] == ENC).any() & (mask[b, ..., s] == DEC).any())
        for name, mask in masks.items()
        for s in range(mask.shape[-1])
    )


@pytest.mark.parametrize("seed", range(3))
def test_cross_space_keeps_the_space_structure_and_separates_encoded_and_decoded_sets(seed):
    sample = tiny_sample(batch=4, size=8, steps=3, with_gaps=False, seed=seed)
    masks = ModalityCrossSpaceMaskingConfig().build().apply(sample, 2, _seeded(seed)).masks
    for name in ENCODABLE:
        assert _constant_over_time(masks[name]), name
    for b in range(4):
        # 6 encodable band sets: defaults encode 2..5 of them and decode the others.
        assert _band_sets_with_both_roles(masks, b) == 0, b
        assert any(count(masks[name][b], ENC) for name in ENCODABLE)
        assert any(count(masks[name][b], DEC) for name in masks)


@pytest.mark.parametrize("seed", range(3))
def test_cross_time_keeps_the_time_structure_and_decodes_static_maps_wholly(seed):
    sample = tiny_sample(batch=4, size=8, steps=4, with_gaps=False, seed=seed)
    masks = ModalityCrossTimeMaskingConfig().build().apply(sample, 2, _seeded(seed)).masks
    for name in ENCODABLE:
        assert _constant_over_space(masks[name]), name
    for b in range(4):
        assert _band_sets_with_both_roles(masks, b) == 0, b
    # Maps have no time axis: they follow the band-set choice. Never encodable and the
    # sets disjoint, every present map is decoded, so all its tokens are DECODER.
    for name in MAPS:
        assert (masks[name] == DEC).all(), name


def test_cross_space_masks_static_maps_by_patch_not_wholly():
    sample = tiny_sample(batch=4, size=8, steps=3, with_gaps=False)
    masks = ModalityCrossSpaceMaskingConfig().build().apply(sample, 2, _seeded()).masks
    # Maps are spatial: they keep space masking's DECODER / TARGET_ONLY pattern.
    assert count(masks["srtm"], TGT) > 0 and count(masks["srtm"], DEC) > 0


def test_modalities_the_structure_cannot_cover_follow_the_band_set_choice():
    space = ModalityCrossSpaceMaskingConfig().build()
    time = ModalityCrossTimeMaskingConfig().build()
    assert space.follows_band_set_choice("latlon")  # no patches
    assert not any(space.follows_band_set_choice(name) for name in ("srtm", "sentinel1"))
    assert time.follows_band_set_choice("latlon") and time.follows_band_set_choice("srtm")
    assert not time.follows_band_set_choice("sentinel1")  # has timesteps


def test_cross_space_time_masks_each_sample_by_space_or_by_time_and_uses_both():
    sample = tiny_sample(batch=16, size=4, steps=4, names=["sentinel2_l2a"], with_gaps=False)
    config = ModalityCrossSpaceTimeMaskingConfig()
    mask = config.build().apply(sample, 1, _seeded()).masks["sentinel2_l2a"]
    kinds = []
    for b in range(16):
        space = _constant_over_time(mask[b : b + 1])
        time = _constant_over_space(mask[b : b + 1])
        assert space or time, b
        kinds.append(time and not space)
    assert 0 < sum(kinds) < 16


def test_cross_space_time_uses_space_for_samples_with_too_few_timesteps():
    sample = tiny_sample(batch=16, size=4, steps=2, names=["sentinel2_l2a"], with_gaps=False)
    for seed in range(3):
        mask = ModalityCrossSpaceTimeMaskingConfig().build().apply(sample, 1, _seeded(seed))
        assert _constant_over_time(mask.masks["sentinel2_l2a"])


def test_defaults_are_the_reference_classes():
    for config in (
        ModalityCrossSpaceMaskingConfig(),
        ModalityCrossTimeMaskingConfig(),
        ModalityCrossSpaceTimeMaskingConfig(),
    ):
        assert not config.allow_encoding_decoding_same_bandset
        assert config.min_encoded_bandsets == 2 and config.max_encoded_bandsets is None
        assert (config.encode_ratio, config.decode_ratio) == (0.5, 0.5)
    assert ModalityCrossTimeMaskingConfig().min_timesteps == 3
