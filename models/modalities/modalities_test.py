"""Registry facts (band counts, band sets, decode-only maps) and band regrouping."""

import pytest

from models.modalities import modalities


def test_sentinel2_has_twelve_bands_in_three_band_sets_by_resolution():
    spec = modalities.get("sentinel2_l2a")
    assert spec.num_bands == 12
    assert [bs.resolution_m for bs in spec.band_sets] == [10.0, 20.0, 40.0]
    assert spec.band_set_indices() == ((0, 1, 2, 3), (4, 5, 6, 7, 8, 9), (10, 11))


def test_landsat_has_eleven_bands_in_two_band_sets():
    spec = modalities.get("landsat")
    assert spec.num_bands == 11
    assert [len(bs.bands) for bs in spec.band_sets] == [1, 10]


def test_v1_recipe_encodes_three_modalities_and_decodes_six_maps():
    specs = [modalities.get(name) for name in modalities.TRAINING_MODALITIES]
    encodable = [s.name for s in specs if not s.decode_only]
    assert encodable == ["sentinel2_l2a", "sentinel1", "landsat"]
    assert all(not s.is_multitemporal for s in specs if s.decode_only)
    assert modalities.get("openstreetmap_raster").num_bands == 30
    assert modalities.get("worldcereal").num_bands == 8


def test_unknown_modality_error_lists_valid_names():
    with pytest.raises(ValueError, match="valid modalities are .*sentinel1"):
        modalities.get("sentinel3")


def test_canonical_order_ignores_input_order():
    assert modalities.canonical_order(["srtm", "landsat", "sentinel2_l2a"]) == (
        "sentinel2_l2a",
        "landsat",
        "srtm",
    )


def test_regroup_keeps_storage_order_and_changes_token_groups():
    tokenization = modalities.SINGLE_BANDSET_TOKENIZATION
    s2 = tokenization.spec("sentinel2_l2a")
    assert s2.num_band_sets == 1
    assert s2.storage_bands == modalities.SENTINEL2_L2A.storage_bands
    assert s2.band_sets[0].resolution_m == 10.0  # finest band of the group
    assert tokenization.spec("sentinel1") is modalities.SENTINEL1


def test_regroup_rejects_unknown_and_incomplete_groups():
    with pytest.raises(ValueError, match="unknown bands"):
        modalities.Tokenization({"sentinel1": (("vv", "hh"),)})
    with pytest.raises(ValueError, match="exactly once"):
        modalities.Tokenization({"sentinel1": (("vv",),)})
