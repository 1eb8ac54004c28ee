"""The `random`, `space` and `time` strategies: their ratios and what shares a decision."""

import pytest
import torch

from models.masking.random_space_time import (
    RandomMaskingConfig,
    SpaceMaskingConfig,
    TimeMaskingConfig,
)
from models.masking.testing import count, tiny_sample
from models.modalities.samples import MaskValue

ENC, TGT, DEC, MIS = (int(v) for v in MaskValue)
ENCODABLE = ("sentinel2_l2a", "sentinel1", "landsat")


def _seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def test_random_gives_exact_ratio_counts_per_sample_and_modality():
    sample = tiny_sample(batch=4, size=4, steps=3)
    config = RandomMaskingConfig(encode_ratio=0.3, decode_ratio=0.5)
    masked = config.build().apply(sample, 1, _seeded())
    for name in ENCODABLE:
        for b in range(4):
            mask = masked.masks[name][b]
            n = mask.numel() - count(mask, MIS)
            if n == 0:
                continue
            assert count(mask, ENC) == int(n * 0.3), (name, b)
            assert count(mask, DEC) == int(n * 0.5), (name, b)
            assert count(mask, TGT) == n - int(n * 0.3) - int(n * 0.5)


def test_random_ratios_hold_over_a_larger_batch_and_every_band_set():
    sample = tiny_sample(batch=16, size=4, steps=4, with_gaps=False)
    masked = RandomMaskingConfig().build().apply(sample, 1, _seeded())
    s2 = masked.masks["sentinel2_l2a"].float()
    for band_set in range(3):
        encoded = (s2[..., band_set] == ENC).float().mean()
        assert abs(encoded - 0.5) < 0.05, band_set  # 768 tokens: std 0.018
    # Maps are decode-only: their would-be encoder half is TARGET_ONLY.
    srtm = masked.masks["srtm"]
    assert count(srtm, ENC) == 0
    assert abs(count(srtm, DEC) / srtm.numel() - 0.5) < 0.1


def test_random_masks_are_not_shared_between_band_sets():
    sample = tiny_sample(batch=2, size=4, steps=2, with_gaps=False)
    mask = RandomMaskingConfig().build().apply(sample, 1, _seeded()).masks["sentinel2_l2a"]
    assert not torch.equal(mask[..., 0], mask[..., 1])


@pytest.mark.parametrize("patch_size", [1, 2])
def test_space_masks_whole_patch_positions_across_time_band_sets_and_modalities(patch_size):
    sample = tiny_sample(batch=4, size=8, steps=3, with_gaps=False)
    masked = SpaceMaskingConfig().build().apply(sample, patch_size, _seeded())
    s2 = masked.masks["sentinel2_l2a"][:, ::patch_size, ::patch_size]  # [B, h, w, T, S]
    pattern = s2[..., 0, 0]
    assert (s2 == pattern[..., None, None]).all()
    s1 = masked.masks["sentinel1"][:, ::patch_size, ::patch_size]
    assert (s1 == pattern[..., None, None]).all()
    positions = pattern[0].numel()
    for b in range(4):
        assert count(pattern[b], ENC) == positions // 2
        assert count(pattern[b], DEC) == positions // 2
    assert not torch.equal(pattern[0], pattern[1])  # one pattern per sample
    # Decode-only maps follow the pattern, with encoder positions turned TARGET_ONLY.
    srtm = masked.masks["srtm"][:, ::patch_size, ::patch_size, 0, 0]
    assert torch.equal(srtm, torch.where(pattern == ENC, TGT, pattern).to(srtm.dtype))


def test_time_masks_whole_timesteps_consistently_across_band_sets_and_modalities():
    sample = tiny_sample(batch=4, size=4, steps=6, with_gaps=False)
    masked = TimeMaskingConfig().build().apply(sample, 2, _seeded())
    per_step = []
    for name in ENCODABLE:
        mask = masked.masks[name]  # [B, H, W, T, S]
        first = mask[:, :1, :1, :, :1]
        assert (mask == first).all(), name  # one value per (sample, timestep)
        per_step.append(first.reshape(4, 6))
    assert all(torch.equal(per_step[0], other) for other in per_step[1:])
    for b in range(4):
        assert count(per_step[0][b], ENC) == 3 and count(per_step[0][b], DEC) == 3
    # Static maps are randomly masked (not by timestep) and never encoded.
    assert count(masked.masks["worldcover"], ENC) == 0
    assert count(masked.masks["worldcover"], DEC) > 0


def test_time_splits_only_the_timesteps_a_sample_has():
    sample = tiny_sample(batch=4, size=2, steps=5, names=["sentinel2_l2a"], with_gaps=False)
    sample.data["sentinel2_l2a"][0, :, :, 3:] = -99999  # sample 0 has 3 timesteps
    masked = TimeMaskingConfig().build().apply(sample, 1, _seeded())
    steps = masked.masks["sentinel2_l2a"][0, 0, 0, :, 0]
    assert steps[3:].tolist() == [MIS, MIS]
    # max(int(3 * 0.5), 1) = 1 encoded, 1 decoded, 1 target-only.
    assert sorted(steps[:3].tolist()) == [ENC, TGT, DEC]


def test_time_falls_back_to_random_masking_with_too_few_timesteps():
    sample = tiny_sample(batch=4, size=4, steps=2, names=["sentinel2_l2a"], with_gaps=False)
    mask = TimeMaskingConfig().build().apply(sample, 1, _seeded()).masks["sentinel2_l2a"]
    # Random masking mixes values inside a timestep, which time masking never does.
    assert (mask[..., 0, :] != mask[:, :1, :1, 0, :1]).any()
    for b in range(4):
        assert count(mask[b], ENC) == mask[b].numel() // 2
