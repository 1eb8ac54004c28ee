"""`random_time_with_decode` (v1.1): decode-only maps, band-set roles, random and time modes;
`random_with_decode`, its always-random form."""

import math

import torch

from models.masking.testing import count, tiny_sample
from models.masking.with_decode import (
    RandomTimeWithDecodeMaskingConfig,
    RandomWithDecodeMaskingConfig,
)
from models.modalities import modalities
from models.modalities.samples import MaskValue

ENC, TGT, DEC, MIS = (int(v) for v in MaskValue)
ENCODABLE = ("sentinel2_l2a", "sentinel1", "landsat")
MAPS = modalities.TRAINING_MODALITIES[3:]


def _masks(sample, seed=0, **kwargs):
    strategy = RandomTimeWithDecodeMaskingConfig(**kwargs).build()
    return strategy.apply(sample, 1, torch.Generator().manual_seed(seed)).masks


def _band_sets(masks, b):
    """The encodable band sets of sample b, as [H, W, T] masks."""
    names = [n for n in ENCODABLE if n in masks]
    return [masks[n][b, ..., s] for n in names for s in range(masks[n].shape[-1])]


def test_every_map_token_with_data_is_decoded():
    masks = _masks(tiny_sample())
    for name in MAPS:
        mask = masks[name]
        assert ((mask == DEC) | (mask == MIS)).all(), name
    assert count(masks["worldcover"][1], MIS) == masks["worldcover"][1].numel()


def test_band_sets_are_split_into_encode_only_and_decode_only_roles():
    sample = tiny_sample(batch=8, size=4, steps=4)
    for seed in range(3):
        masks = _masks(sample, seed)
        for b in range(8):
            band_sets = [m for m in _band_sets(masks, b) if (m != MIS).any()]
            encode = [m for m in band_sets if (m == ENC).any()]
            decode = [m for m in band_sets if (m == DEC).any()]
            assert not any((m == ENC).any() and (m == DEC).any() for m in band_sets)
            assert len(encode) == math.ceil(len(band_sets) * 0.5), (seed, b)
            assert len(decode) == len(band_sets) - len(encode), (seed, b)


def test_random_mode_encodes_and_decodes_half_of_each_band_set():
    sample = tiny_sample(batch=4, size=4, steps=4, with_gaps=False)
    masks = _masks(sample, random_ratio=1.0)
    for b in range(4):
        for mask in _band_sets(masks, b):
            n = mask.numel()
            assert count(mask, ENC) + count(mask, DEC) == n // 2
            assert count(mask, TGT) == n - n // 2


def test_time_mode_splits_the_timesteps_consistently_across_band_sets():
    sample = tiny_sample(batch=4, size=4, steps=6, with_gaps=False)
    masks = _masks(sample, random_ratio=0.0)
    for b in range(4):
        encode_steps, decode_steps = set(), set()
        for mask in _band_sets(masks, b):
            # One value per timestep: whole timesteps are encoded or decoded.
            assert (mask == mask[:1, :1]).all()
            values = mask[0, 0].tolist()
            encode_steps |= {t for t, v in enumerate(values) if v == ENC}
            decode_steps |= {t for t, v in enumerate(values) if v == DEC}
        assert len(encode_steps) == 3 and len(decode_steps) == 3
        assert not encode_steps & decode_steps


def test_time_mode_uses_only_timesteps_with_data():
    names = ["sentinel2_l2a", "sentinel1"]
    sample = tiny_sample(batch=4, size=2, steps=4, names=names, with_gaps=False)
    for name in names:
        sample.data[name][0, :, :, 2:] = modalities.MISSING_VALUE  # sample 0: t = 0, 1 only
    for seed in range(4):
        masks = _masks(sample, seed, random_ratio=0.0)
        encode_steps, decode_steps = set(), set()
        for mask in _band_sets(masks, 0):
            values = mask[0, 0].tolist()
            assert values[2:] == [MIS, MIS]
            encode_steps |= {t for t, v in enumerate(values) if v == ENC}
            decode_steps |= {t for t, v in enumerate(values) if v == DEC}
        # ceil(2 * 0.5) = 1 encode timestep; the other present one is decoded.
        assert len(encode_steps) == 1 and len(decode_steps) == 1, seed
        assert encode_steps | decode_steps == {0, 1}


def test_a_single_band_set_is_randomly_split_between_encoder_and_decoder():
    sample = tiny_sample(batch=4, size=4, steps=2, names=["sentinel1"], with_gaps=False)
    masks = _masks(sample)
    for b in range(4):
        mask = masks["sentinel1"][b]
        assert count(mask, ENC) == 16 and count(mask, DEC) == 16


def test_random_ratio_chooses_time_masking_about_half_the_time():
    sample = tiny_sample(batch=64, size=2, steps=4, names=["sentinel2_l2a"], with_gaps=False)
    masks = _masks(sample)["sentinel2_l2a"]  # [B, 2, 2, 4, 3]
    # In time mode each (sample, band set, timestep) holds a single value.
    per_step_constant = (masks == masks[:, :1, :1]).reshape(64, -1).all(-1)
    assert 16 <= int(per_step_constant.sum()) <= 48  # Binomial(64, 0.5): mean 32, std 4


def test_random_with_decode_is_random_time_with_decode_that_never_masks_by_time():
    sample = tiny_sample(batch=8, size=4, steps=4)
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        ours = RandomWithDecodeMaskingConfig().build().apply(sample, 1, generator).masks
        always_random = _masks(sample, seed=seed, random_ratio=1.0)
        assert all(torch.equal(ours[name], always_random[name]) for name in ours)
    # Never by time: within an encode band set, encoder tokens are spread over the
    # timesteps rather than filling whole ones.
    s2 = ours["sentinel2_l2a"]
    whole_steps = (s2 == s2[:, :1, :1]).all(dim=(1, 2))  # [B, T, S]
    assert not whole_steps.all()
