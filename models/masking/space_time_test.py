"""`space_time` and `random_space`: each sample is masked by one of two structures."""

import torch

from models.masking.random_space_time import TimeMaskingConfig
from models.masking.space_time import RandomSpaceMaskingConfig, SpaceTimeMaskingConfig
from models.masking.testing import tiny_sample
from models.modalities.samples import MaskValue

MIS = int(MaskValue.MISSING)


def _seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def _is_space_structured(mask):
    """[H, W, T, S] (patch size 1): one value per position, the same at every t and s."""
    return bool((mask == mask[:, :, :1, :1]).all())


def _is_time_structured(mask):
    """One value per timestep, the same at every position and band set."""
    return bool((mask == mask[:1, :1, :, :1]).all())


def test_space_time_masks_each_sample_by_space_or_by_time_and_uses_both():
    sample = tiny_sample(batch=16, size=4, steps=4, names=["sentinel2_l2a"], with_gaps=False)
    mask = SpaceTimeMaskingConfig().build().apply(sample, 1, _seeded()).masks["sentinel2_l2a"]
    kinds = []
    for b in range(16):
        space, time = _is_space_structured(mask[b]), _is_time_structured(mask[b])
        assert space != time, b  # exactly one structure per sample
        kinds.append(time)
    # A fair coin per sample: all 16 alike has probability 2 * 0.5**16.
    assert 0 < sum(kinds) < 16


def test_space_time_gives_samples_with_too_few_timesteps_space_masking():
    sample = tiny_sample(batch=16, size=4, steps=4, names=["sentinel2_l2a"], with_gaps=False)
    sample.data["sentinel2_l2a"][:8, :, :, 2:] = -99999  # samples 0..7: 2 timesteps
    config = SpaceTimeMaskingConfig()
    assert config.min_timesteps == 3
    for seed in range(3):
        mask = config.build().apply(sample, 1, _seeded(seed)).masks["sentinel2_l2a"]
        for b in range(8):
            present = mask[b, :, :, :2]
            assert _is_space_structured(present) and not _is_time_structured(present), b
            assert (mask[b, :, :, 2:] == MIS).all()
        assert any(_is_time_structured(mask[b]) for b in range(8, 16))


def test_space_time_takes_min_timesteps_from_its_config():
    sample = tiny_sample(batch=16, size=4, steps=4, names=["sentinel2_l2a"], with_gaps=False)
    config = SpaceTimeMaskingConfig(min_timesteps=5)  # more than the 4 the samples have
    mask = config.build().apply(sample, 1, _seeded()).masks["sentinel2_l2a"]
    assert all(_is_space_structured(mask[b]) for b in range(16))
    assert isinstance(config, TimeMaskingConfig)


def test_random_space_masks_each_sample_at_random_or_by_space_and_uses_both():
    sample = tiny_sample(batch=16, size=4, steps=3, names=["sentinel2_l2a"], with_gaps=False)
    mask = RandomSpaceMaskingConfig().build().apply(sample, 1, _seeded()).masks["sentinel2_l2a"]
    space = [_is_space_structured(mask[b]) for b in range(16)]
    assert 0 < sum(space) < 16
    for b in range(16):
        # Either way exactly half of the sample's 144 tokens are encoded.
        assert int((mask[b] == MaskValue.ONLINE_ENCODER).sum()) == 72, b
