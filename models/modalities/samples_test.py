"""Sample validation, missing-data masks and the target view (`unmask`)."""

import pytest
import torch

from models.modalities import modalities
from models.modalities.samples import MaskedSample, MaskValue, Sample, TokensAndMasks


def _sample(batch=2, size=4, steps=3):
    s2 = torch.rand(batch, size, size, steps, 12)
    s2[0, :, :, 1, 10:] = modalities.MISSING_VALUE  # 40 m band set missing at t=1
    return Sample(
        data={"sentinel2_l2a": s2, "srtm": torch.rand(batch, size, size, 1, 1)},
        timestamps=torch.zeros(batch, steps, 3, dtype=torch.long),
    )


def test_wrong_band_count_names_modality_and_expected_bands():
    with pytest.raises(ValueError, match="sentinel1.*has 2"):
        Sample(data={"sentinel1": torch.zeros(1, 2, 2, 1, 3)}, timestamps=torch.zeros(1, 1, 3))


def test_band_set_with_all_bands_missing_is_masked_missing():
    masked = MaskedSample.from_sample(_sample())
    mask = masked.masks["sentinel2_l2a"]
    assert mask.shape == (2, 4, 4, 3, 3)
    assert (mask[0, :, :, 1, 2] == MaskValue.MISSING).all()
    assert (mask[0, :, :, 1, :2] == MaskValue.ONLINE_ENCODER).all()
    assert (mask[1] == MaskValue.ONLINE_ENCODER).all()


def test_unmask_shows_everything_except_missing():
    masked = MaskedSample.from_sample(_sample())
    masked.masks["sentinel2_l2a"][1, 0, 0, 0, 0] = MaskValue.DECODER
    masked.masks["srtm"][:, :2] = MaskValue.TARGET_ONLY
    target_view = masked.unmask()
    s2 = target_view.masks["sentinel2_l2a"]
    assert (s2[0, :, :, 1, 2] == MaskValue.MISSING).all()
    assert (s2[1] == MaskValue.ONLINE_ENCODER).all()
    assert (target_view.masks["srtm"] == MaskValue.ONLINE_ENCODER).all()


def test_flatten_concatenates_modalities_in_canonical_order():
    tokens = {
        "srtm": torch.full((1, 2, 2, 1, 1, 4), 2.0),
        "sentinel2_l2a": torch.full((1, 2, 2, 3, 3, 4), 1.0),
    }
    masks = {name: torch.zeros(t.shape[:-1], dtype=torch.int8) for name, t in tokens.items()}
    flat, flat_mask = TokensAndMasks(tokens, masks).flatten()
    assert flat.shape == (1, 2 * 2 * 3 * 3 + 4, 4)
    assert flat_mask.shape == flat.shape[:2]
    assert (flat[0, :36] == 1.0).all() and (flat[0, 36:] == 2.0).all()


def test_missing_mask_is_the_same_for_regrouped_noncontiguous_band_sets():
    values = torch.rand(1, 2, 2, 1, 12)
    values[..., [0, 5]] = modalities.MISSING_VALUE
    regrouped = modalities.SENTINEL2_L2A.regroup(
        [
            ("B02", "B06"),
            tuple(b for b in modalities.SENTINEL2_L2A.storage_bands if b not in ("B02", "B06")),
        ]
    )
    from models.modalities.samples import missing_band_set_mask

    mask = missing_band_set_mask(values, regrouped)
    assert mask[..., 0].all() and not mask[..., 1].any()
