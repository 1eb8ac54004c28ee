"""`random_increasing` (ratios moving over calls) and `random_range` (per-sample ratios)."""

import dataclasses

import pytest
import torch

from models.masking.ratio_schedules import (
    RandomIncreasingMaskingConfig,
    RandomRangeMaskingConfig,
)
from models.masking.testing import count, tiny_sample
from models.modalities.samples import MaskValue

ENC, TGT, DEC, MIS = (int(v) for v in MaskValue)


def _seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def _s2_only(batch=4, size=4, steps=4):
    return tiny_sample(
        batch=batch, size=size, steps=steps, names=["sentinel2_l2a"], with_gaps=False
    )


def test_random_increasing_ratios_move_linearly_to_the_final_ones_and_stay():
    strategy = RandomIncreasingMaskingConfig(steps=10).build()
    assert strategy.ratios_at(5) == pytest.approx((0.3, 0.7))
    assert strategy.ratios_at(1) == pytest.approx((0.46, 0.54))
    # Exactly the final ratios from `steps` on (interpolation would give 0.0999...98).
    assert strategy.ratios_at(10) == (0.1, 0.9)
    assert strategy.ratios_at(500) == (0.1, 0.9)


def test_random_increasing_encodes_fewer_tokens_call_after_call():
    sample = _s2_only()  # 4 samples x 192 tokens (4 x 4 patches, 4 timesteps, 3 band sets)
    strategy = RandomIncreasingMaskingConfig(steps=4).build()
    generator = _seeded()
    encoded = []
    for _ in range(5):
        mask = strategy.apply(sample, 1, generator).masks["sentinel2_l2a"]
        encoded.append([count(mask[b], ENC) for b in range(4)])
    # Calls 1..4 use 0.4, 0.3, 0.2, 0.1; call 5 stays at 0.1: int(192 * ratio) per sample.
    assert encoded == [[76] * 4, [57] * 4, [38] * 4, [19] * 4, [19] * 4]
    assert count(mask, DEC) == 4 * int(192 * 0.9)
    assert strategy.calls == 5


def test_random_increasing_counts_each_view_as_a_call():
    strategy = RandomIncreasingMaskingConfig(steps=4).build()
    views = strategy.apply_views(_s2_only(), 1, _seeded(), num_views=2)
    assert strategy.calls == 2
    first, second = (count(v.masks["sentinel2_l2a"], ENC) for v in views)
    assert (first, second) == (4 * 76, 4 * 57)  # ratios 0.4, then 0.3


def test_random_range_draws_a_ratio_per_sample_within_the_range():
    sample = tiny_sample(batch=32, size=8, steps=4, names=["sentinel2_l2a"], with_gaps=False)
    mask = RandomRangeMaskingConfig().build().apply(sample, 1, _seeded()).masks["sentinel2_l2a"]
    shares = []
    for b in range(32):
        n = mask[b].numel()  # 768 tokens
        encoded, decoded = count(mask[b], ENC), count(mask[b], DEC)
        assert int(n * 0.1) <= encoded <= int(n * 0.5), b
        # Without a decode range the decode ratio is 1 - the encode ratio: at most one
        # token is lost to the two floors.
        assert n - 1 <= encoded + decoded <= n, b
        shares.append(encoded / n)
    assert max(shares) - min(shares) > 0.2  # 32 uniform draws over a 0.4-wide range


def test_random_range_draws_the_decode_ratio_from_its_own_range():
    sample = tiny_sample(batch=16, size=8, steps=2, names=["sentinel1"], with_gaps=False)
    config = RandomRangeMaskingConfig(
        min_encode_ratio=0.2, max_encode_ratio=0.3, min_decode_ratio=0.4, max_decode_ratio=0.6
    )
    mask = config.build().apply(sample, 1, _seeded()).masks["sentinel1"]
    for b in range(16):
        n = mask[b].numel()  # 128 tokens
        assert int(n * 0.2) <= count(mask[b], ENC) <= int(n * 0.3)
        assert int(n * 0.4) <= count(mask[b], DEC) <= int(n * 0.6)
        assert count(mask[b], TGT) > 0


def test_random_range_keeps_one_encoded_and_one_decoded_token_of_small_modalities():
    # One patch, one timestep: 3 S2 tokens; a 0.1 ratio would encode int(0.3) = 0 of them.
    sample = tiny_sample(batch=16, size=1, steps=1, names=["sentinel2_l2a"], with_gaps=False)
    config = RandomRangeMaskingConfig(min_encode_ratio=0.05, max_encode_ratio=0.1)
    mask = config.build().apply(sample, 1, _seeded()).masks["sentinel2_l2a"]
    for b in range(16):
        assert (count(mask[b], ENC), count(mask[b], DEC)) == (1, 2), b


def test_random_range_derives_encode_and_decode_ratio_from_the_ranges():
    config = RandomRangeMaskingConfig()
    assert (config.encode_ratio, config.decode_ratio) == pytest.approx((0.3, 0.7))
    changed = dataclasses.replace(config, min_encode_ratio=0.3)
    assert changed.encode_ratio == pytest.approx(0.4)
    with_decode = RandomRangeMaskingConfig(min_decode_ratio=0.2, max_decode_ratio=0.4)
    assert with_decode.decode_ratio == pytest.approx(0.3)
    with pytest.raises(TypeError, match="encode_ratio"):
        RandomRangeMaskingConfig(encode_ratio=0.3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_encode_ratio": 0.6}, "max_encode_ratio must be >= min_encode_ratio"),
        ({"max_encode_ratio": 1.2}, r"max_encode_ratio must be a number in \[0, 1\]"),
        ({"min_decode_ratio": 0.2}, "must both be None or both be set"),
        (
            {"min_decode_ratio": 0.4, "max_decode_ratio": 0.6},
            r"max_encode_ratio \+ max_decode_ratio must be <= 1; got 0.5 \+ 0.6",
        ),
    ],
)
def test_random_range_config_errors_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandomRangeMaskingConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"final_decode_ratio": 0.95}, r"final_encode_ratio \+ final_decode_ratio must be <= 1"),
        ({"steps": 0}, "steps must be an int >= 1; got 0"),
        ({"initial_encode_ratio": -0.5}, r"initial_encode_ratio must be a number in \[0, 1\]"),
    ],
)
def test_random_increasing_config_errors_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandomIncreasingMaskingConfig(**kwargs)
