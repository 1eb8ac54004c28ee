"""Token budget (largest T that fits) and crop-window draws."""

import numpy as np
import pytest

from models.data import crop
from models.modalities import modalities

V1_SPECS = modalities.DEFAULT_TOKENIZATION.specs(modalities.TRAINING_MODALITIES)


def _tokens(specs, patches_per_side, steps):
    """Tokens of an instance counted one token at a time (independent of crop.token_counts)."""
    total = 0
    for spec in specs:
        if not spec.is_spatial:
            continue
        per_patch = spec.num_band_sets * (steps if spec.is_multitemporal else 1)
        total += patches_per_side * patches_per_side * per_patch
    return total


@pytest.mark.parametrize(
    "tokenization", [modalities.DEFAULT_TOKENIZATION, modalities.SINGLE_BANDSET_TOKENIZATION]
)
def test_budget_is_never_exceeded_and_t_is_the_largest_that_fits(tokenization):
    specs = tokenization.specs(modalities.TRAINING_MODALITIES)
    checked = 0
    for patch_size in range(1, 9):
        for patches_per_side in range(1, 64 // patch_size + 1):
            if _tokens(specs, patches_per_side, 1) > crop.DEFAULT_TOKEN_BUDGET:
                with pytest.raises(ValueError, match="token_budget is 2250"):
                    crop.max_timesteps_within_budget(specs, patches_per_side, 2250, 12)
                continue
            steps = crop.max_timesteps_within_budget(specs, patches_per_side, 2250, 12)
            assert 1 <= steps <= 12
            assert _tokens(specs, patches_per_side, steps) <= 2250
            assert steps == 12 or _tokens(specs, patches_per_side, steps + 1) > 2250
            checked += 1
    assert checked > 50


def test_v1_modalities_with_eight_patches_per_side_get_four_timesteps():
    # 64 patches x 6 static band sets = 384; 64 x (S2 3 + S1 1 + Landsat 2) = 384 per step;
    # (2250 - 384) / 384 = 4.86 -> 4.
    assert crop.token_counts(V1_SPECS, 8) == (384, 384)
    assert crop.max_timesteps_within_budget(V1_SPECS, 8, 2250, 12) == 4
    assert crop.max_timesteps_within_budget(V1_SPECS, 2, 2250, 12) == 12  # capped


def test_no_budget_keeps_every_timestep_and_latlon_costs_nothing():
    specs = modalities.DEFAULT_TOKENIZATION.specs(["sentinel1", "latlon"])
    assert crop.max_timesteps_within_budget(specs, 30, None, 12) == 12
    assert crop.token_counts(specs, 3) == (0, 9)


def test_static_only_instances_have_one_step():
    specs = modalities.DEFAULT_TOKENIZATION.specs(["srtm", "worldcover"])
    assert crop.max_timesteps_within_budget(specs, 4, 100, 12) == 1
    with pytest.raises(ValueError, match="need 50 tokens"):
        crop.max_timesteps_within_budget(specs, 5, 40, 12)


def test_window_starts_only_where_some_modality_has_data_and_fits_the_series():
    present = {
        "sentinel2_l2a": np.array([False, True, False, False, True, False]),
        "sentinel1": np.array([False, False, True, False, False, True]),
    }
    assert crop.valid_start_timesteps(present, 3, 6) == [1, 2]
    assert crop.valid_start_timesteps(present, 6, 6) == [0]
    assert crop.valid_start_timesteps({}, 2, 4) == [0, 1, 2]
    with pytest.raises(ValueError, match="no start step"):
        crop.valid_start_timesteps({"landsat": np.array([False, False, False, True])}, 2, 4)


def test_crop_window_stays_inside_the_sample_and_covers_every_position():
    rng = np.random.default_rng(0)
    tops = set()
    for _ in range(300):
        window = crop.sample_crop_window(rng, 10, 12, 8, 2, [0, 3])
        assert 0 <= window.top <= 2 and 0 <= window.left <= 4
        assert window.start_t in (0, 3) and window.num_t == 2 and window.size == 8
        tops.add(window.top)
    assert tops == {0, 1, 2}
    with pytest.raises(ValueError, match="does not fit"):
        crop.sample_crop_window(rng, 10, 12, 11, 1, [0])
