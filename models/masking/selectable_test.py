"""`selectable_modality` and `selectable_random_range_modality`: per-sample whole-modality
decoding or dropping on top of random (range) masking."""

import pytest
import torch

from models.masking.random_space_time import RandomMaskingConfig
from models.masking.selectable import (
    SelectableModalityMaskingConfig,
    SelectableRandomRangeModalityMaskingConfig,
)
from models.masking.testing import count, tiny_sample
from models.modalities import modalities
from models.modalities.samples import MaskValue, missing_band_set_mask

ENC, TGT, DEC, MIS = (int(v) for v in MaskValue)
CANDIDATES = {
    "decodable_modalities": ("landsat", "worldcover"),
    "fully_mask_modalities": ("sentinel1", "srtm"),
}


def _seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def _chosen(sample, masks, b):
    """The candidates sample b had taken wholly: DECODER (decodable) or MISSING (dropped)."""
    chosen = []
    for name in CANDIDATES["decodable_modalities"]:
        mask = masks[name][b]
        if (mask[mask != MIS] == DEC).all():
            chosen.append(name)
    for name in CANDIDATES["fully_mask_modalities"]:
        no_data = missing_band_set_mask(sample.data[name][b], modalities.get(name))
        if (masks[name][b] == MIS).all() and not no_data.all():
            chosen.append(name)
    return chosen


@pytest.mark.parametrize(
    "config_class", [SelectableModalityMaskingConfig, SelectableRandomRangeModalityMaskingConfig]
)
def test_each_sample_takes_up_to_max_to_mask_candidates_wholly(config_class):
    sample = tiny_sample(batch=8, size=4, steps=3, with_gaps=False)
    config = config_class(**CANDIDATES, max_to_mask=2)
    counts, per_sample_choices = set(), set()
    for seed in range(10):
        masks = config.build().apply(sample, 1, _seeded(seed)).masks
        for b in range(8):
            chosen = _chosen(sample, masks, b)
            counts.add(len(chosen))
            per_sample_choices.add(tuple(chosen))
    assert counts == {0, 1, 2}
    assert len(per_sample_choices) > 4  # different candidates, not a fixed set


def test_a_chosen_decodable_modality_keeps_missing_where_it_has_no_data():
    sample = tiny_sample()  # sample 1 has no WorldCover, sample 2 lacks Landsat at 2 steps
    config = SelectableModalityMaskingConfig(
        decodable_modalities=("landsat", "worldcover"), fully_mask_modalities=(), max_to_mask=2
    )
    for seed in range(5):
        masks = config.build().apply(sample, 2, _seeded(seed)).masks
        for name in ("landsat", "worldcover"):
            no_data = missing_band_set_mask(sample.data[name], modalities.get(name))
            assert torch.equal(masks[name] == MIS, no_data), name


def test_max_to_mask_zero_is_random_masking():
    sample = tiny_sample()
    config = SelectableModalityMaskingConfig(**CANDIDATES, max_to_mask=0)
    ours = config.build().apply(sample, 2, _seeded(4)).masks
    plain = RandomMaskingConfig().build().apply(sample, 2, _seeded(4)).masks
    assert all(torch.equal(ours[name], plain[name]) for name in plain)


def test_random_range_stage_gives_each_sample_its_own_encode_ratio():
    sample = tiny_sample(batch=16, size=8, steps=2, names=["sentinel2_l2a", "landsat"])
    config = SelectableRandomRangeModalityMaskingConfig(
        decodable_modalities=("landsat",), fully_mask_modalities=(), max_to_mask=1
    )
    s2 = config.build().apply(sample, 1, _seeded()).masks["sentinel2_l2a"]
    shares = [count(s2[b], ENC) / int((s2[b] != MIS).sum()) for b in range(16)]
    assert all(0.09 <= share <= 0.5 for share in shares)
    assert max(shares) - min(shares) > 0.15
    assert (config.encode_ratio, config.max_to_mask) == (pytest.approx(0.3), 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"decodable_modalities": ("srtm",), "fully_mask_modalities": ("srtm",)},
            r"\['srtm'\] are in both decodable_modalities and fully_mask_modalities",
        ),
        ({"decodable_modalities": (), "fully_mask_modalities": ()}, "are both empty"),
        ({**CANDIDATES, "max_to_mask": -1}, "max_to_mask must be an int >= 0; got -1"),
        ({**CANDIDATES, "max_to_mask": 1.5}, "max_to_mask must be an int >= 0"),
    ],
)
def test_config_errors_name_the_field(kwargs, message):
    kwargs = {"max_to_mask": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        SelectableModalityMaskingConfig(**kwargs)
