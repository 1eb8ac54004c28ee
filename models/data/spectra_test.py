"""Class signatures: one per WorldCover class, physically shaped, inside the real statistics."""

import json

import numpy as np

from models.data import spectra
from models.data.normalize import DEFAULT_STATS_DIR, NormalizerConfig
from models.modalities import modalities

S2_BANDS = modalities.SENTINEL2_L2A.storage_bands


def _ndvi(table):
    red, nir = table[:, S2_BANDS.index("B04")], table[:, S2_BANDS.index("B08")]
    return (nir - red) / (nir + red)


def test_there_is_one_profile_per_worldcover_class_in_canonical_order():
    assert tuple(p.code for p in spectra.PROFILES) == modalities.WORLDCOVER_CLASSES


def test_green_vegetation_has_high_ndvi_and_dormant_states_lower():
    green, dormant = _ndvi(spectra.s2_table("s2_green")), _ndvi(spectra.s2_table("s2_dormant"))
    for i, profile in enumerate(spectra.PROFILES):
        if profile.is_vegetation:
            assert green[i] >= 0.6, profile.name
            assert dormant[i] < green[i] - 0.1, profile.name  # evergreen mangroves: 0.12
    water = modalities.WORLDCOVER_CLASSES.index(80)
    assert green[water] < 0  # water reflects less in NIR than in red


def test_every_signature_but_snow_normalizes_into_zero_one_with_the_real_stats():
    normalizer = NormalizerConfig().build()
    for attribute in ("s2_green", "s2_dormant"):
        table = spectra.s2_table(attribute)
        normalized = normalizer.normalize("sentinel2_l2a", table)
        for i, profile in enumerate(spectra.PROFILES):
            if profile.code == 70:
                assert normalized[i].max() > 1  # snow is brighter than mean + 2 std
                continue
            assert normalized[i].min() >= 0 and normalized[i].max() <= 1, profile.name


def test_s1_signatures_are_inside_mean_plus_minus_two_std_of_the_real_stats():
    stats = json.loads((DEFAULT_STATS_DIR / "computed.json").read_text())["sentinel1"]
    for index, band in enumerate(("vv", "vh")):
        mean, std = stats[band]["mean"], stats[band]["std"]
        for profile in spectra.PROFILES:
            value = profile.s1_db[index] + profile.s1_green_gain_db[index]
            assert mean - 2 * std <= profile.s1_db[index] and value <= mean + 2 * std


def test_landsat_bands_follow_s2_at_matching_wavelengths():
    s2 = spectra.s2_table("s2_green")
    landsat = spectra.s2_to_landsat_reflectance(s2)
    assert landsat.shape == (11, 8)
    np.testing.assert_array_equal(landsat[:, 4], s2[:, S2_BANDS.index("B04")])  # red
    np.testing.assert_array_equal(landsat[:, 5], s2[:, S2_BANDS.index("B8A")])  # NIR
    # Collection-2 scaling: zero reflectance is DN 7273, reflectance 0.1 about 10909.
    np.testing.assert_allclose(
        spectra.landsat_dn(np.array([0.0, 1000.0])), [7272.7, 10909.1], atol=0.1
    )
