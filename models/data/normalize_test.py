"""Normalization: COMPUTED mean +- 2 std -> [0, 1], PREDEFINED fallback, MISSING kept."""

import json

import numpy as np
import pytest

from models.data.normalize import (
    DEFAULT_STATS_DIR,
    MissingStatsError,
    NormalizerConfig,
    Strategy,
)
from models.modalities import modalities

MISSING = modalities.MISSING_VALUE


def _stats(filename):
    return json.loads((DEFAULT_STATS_DIR / filename).read_text())


def test_computed_maps_mean_minus_and_plus_two_std_to_zero_and_one_without_clipping():
    stats = _stats("computed.json")["sentinel2_l2a"]
    bands = modalities.SENTINEL2_L2A.storage_bands
    mean = np.array([stats[b]["mean"] for b in bands])
    std = np.array([stats[b]["std"] for b in bands])
    raw = np.stack([mean - 2 * std, mean, mean + 2 * std, mean + 4 * std]).astype(np.float32)
    out = NormalizerConfig().build().normalize("sentinel2_l2a", raw)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], 0.0, atol=1e-6)
    np.testing.assert_allclose(out[1], 0.5, atol=1e-6)
    np.testing.assert_allclose(out[2], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[3], 1.5, atol=1e-6)  # not clipped


def test_s1_decibels_normalize_with_their_own_band_stats():
    stats = _stats("computed.json")["sentinel1"]
    raw = np.array([[stats["vv"]["mean"], stats["vh"]["mean"] + stats["vh"]["std"]]])
    out = NormalizerConfig().build().normalize("sentinel1", raw)
    np.testing.assert_allclose(out, [[0.5, 0.75]], atol=1e-6)


def test_missing_values_are_returned_untouched_next_to_normalized_ones():
    raw = np.full((2, 2, 1, 12), 1000.0, dtype=np.float32)
    raw[0, 1, 0, :] = MISSING
    raw[1, 0, 0, 3] = MISSING
    out = NormalizerConfig().build().normalize("sentinel2_l2a", raw)
    assert (out[0, 1, 0] == MISSING).all()
    assert out[1, 0, 0, 3] == MISSING
    assert ((out != MISSING).sum()) == 4 * 12 - 12 - 1
    assert np.all(np.abs(out[out != MISSING]) < 2)


def test_modalities_without_computed_stats_fall_back_to_predefined_min_max():
    normalizer = NormalizerConfig().build()
    strategy, low, high = normalizer.band_range("worldcereal")
    assert strategy is Strategy.PREDEFINED
    out = normalizer.normalize("worldcereal", np.array([[0, 50, 100, 0, 0, 0, 0, 100]]))
    np.testing.assert_allclose(out, [[0, 0.5, 1, 0, 0, 0, 0, 1]])
    np.testing.assert_allclose(normalizer.normalize("latlon", np.array([0.0, 90.0])), [0.5, 0.75])
    assert normalizer.band_range("openstreetmap_raster")[0] is Strategy.PREDEFINED
    assert normalizer.band_range("worldcover")[0] is Strategy.COMPUTED


def test_a_modality_missing_one_computed_band_uses_predefined_for_all_bands(tmp_path):
    computed = {"sentinel1": {"vv": {"mean": -10.0, "std": 5.0}}}  # no vh
    predefined = {"sentinel1": {"vv": {"min": -50, "max": 0}, "vh": {"min": -50, "max": 0}}}
    (tmp_path / "computed.json").write_text(json.dumps(computed))
    (tmp_path / "predefined.json").write_text(json.dumps(predefined))
    normalizer = NormalizerConfig(stats_dir=str(tmp_path)).build()
    out = normalizer.normalize("sentinel1", np.array([[-25.0, -25.0]]))
    np.testing.assert_allclose(out, [[0.5, 0.5]])


def test_missing_stats_error_names_modality_band_and_files(tmp_path):
    (tmp_path / "computed.json").write_text(json.dumps({"srtm": {}}))
    (tmp_path / "predefined.json").write_text(json.dumps({"srtm": {"other": {"min": 0, "max": 1}}}))
    normalizer = NormalizerConfig(stats_dir=str(tmp_path)).build()
    with pytest.raises(MissingStatsError) as raised:
        normalizer.normalize("srtm", np.zeros((1, 1)))
    message = str(raised.value)
    assert "'srtm'" in message and "band 'srtm'" in message
    assert str(tmp_path / "computed.json") in message
    assert str(tmp_path / "predefined.json") in message


def test_std_multiplier_widens_the_range():
    stats = _stats("computed.json")["srtm"]["srtm"]
    value = np.array([[stats["mean"] + 3 * stats["std"]]])
    out = NormalizerConfig(std_multiplier=3.0).build().normalize("srtm", value)
    np.testing.assert_allclose(out, [[1.0]], atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"strategies": ("mean",)}, "strategies"), ({"std_multiplier": 0.0}, "std_multiplier")],
)
def test_invalid_config_names_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NormalizerConfig(**kwargs)
