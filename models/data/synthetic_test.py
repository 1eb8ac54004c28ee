"""Synthetic Earth: determinism, physical structure, labels and the cached default dataset."""

import os

import numpy as np
import pytest

from models.data import h5_format, spectra, synthetic
from models.data.synthetic import SyntheticEarthConfig
from models.modalities import modalities

S2_BANDS = modalities.SENTINEL2_L2A.storage_bands
RED, NIR, BLUE = (S2_BANDS.index(b) for b in ("B04", "B08", "B02"))


@pytest.fixture(scope="module")
def samples():
    earth = SyntheticEarthConfig(size=32, seed=7).build()
    return [earth.sample(i) for i in range(24)]


def _clear_steps(sample):
    """(stored S2 index, month) of S2 steps with no cloud at all."""
    record = sample.record
    present = np.flatnonzero(record.present_timesteps["sentinel2_l2a"])
    months = record.timestamps[:, 1]
    return [(k, months[t]) for k, t in enumerate(present) if sample.s2_cloud_fraction[t] == 0]


def _with_s2(samples):
    return [s for s in samples if "sentinel2_l2a" in s.record.modalities]


def test_same_seed_gives_identical_arrays_and_another_seed_does_not():
    first = SyntheticEarthConfig(size=16, seed=3).build().sample(2).record
    again = SyntheticEarthConfig(size=16, seed=3).build().sample(2).record
    other = SyntheticEarthConfig(size=16, seed=4).build().sample(2).record
    assert set(first.modalities) == set(again.modalities)
    for name, array in first.modalities.items():
        assert array.dtype == again.modalities[name].dtype
        assert array.tobytes() == again.modalities[name].tobytes()
    for name, mask in first.present_timesteps.items():
        np.testing.assert_array_equal(mask, again.present_timesteps[name])
    np.testing.assert_array_equal(first.timestamps, again.timestamps)
    assert not np.array_equal(first.modalities["worldcover"], other.modalities["worldcover"])


def test_written_files_are_byte_identical_for_the_same_seed(tmp_path):
    config = SyntheticEarthConfig(size=16, timesteps=3)
    dirs = [synthetic.write_synthetic_dataset(tmp_path / name, 2, 5, config) for name in "ab"]
    names = sorted(os.listdir(dirs[0]))
    assert names == sorted(os.listdir(dirs[1]))
    assert "sample_1.h5" in names and h5_format.METADATA_FILENAME in names
    for name in names:
        assert (dirs[0] / name).read_bytes() == (dirs[1] / name).read_bytes(), name


def test_dataset_folder_follows_the_reference_naming(tmp_path):
    h5_dir = synthetic.write_synthetic_dataset(tmp_path, 1, 0, SyntheticEarthConfig(size=16))
    relative = h5_dir.relative_to(tmp_path)
    assert relative.parts[0] == "h5py_data_w_missing_timesteps_gzip_4_shuffle_16_x_1"
    assert relative.parts[1] == "_".join(sorted(modalities.TRAINING_MODALITIES))
    assert relative.parts[2] == "1"


def test_class_conditional_s2_spectra_differ_by_class(samples):
    sums, counts = np.zeros((11, 12)), np.zeros(11)
    for sample in _with_s2(samples):
        classes = np.searchsorted(modalities.WORLDCOVER_CLASSES, sample.labels)
        s2 = sample.record.modalities["sentinel2_l2a"].astype(np.float64)
        for k, _ in _clear_steps(sample):
            sums += np.stack([s2[:, :, k][classes == c].sum(0) for c in range(11)])
            counts += np.bincount(classes.ravel(), minlength=11)
    seen = np.flatnonzero(counts > 200)
    assert len(seen) >= 5
    means = sums[seen] / counts[seen, None]
    for i in range(len(seen)):
        for j in range(i + 1, len(seen)):
            assert np.abs(means[i] - means[j]).max() > 150, (seen[i], seen[j])
    water = modalities.WORLDCOVER_CLASSES.index(80)
    if water in seen:
        assert means[list(seen).index(water), NIR] == means[:, NIR].min()


def test_vegetation_ndvi_peaks_in_the_local_summer(samples):
    summer, winter = [], []
    for sample in _with_s2(samples):
        lat = sample.record.latlon[0]
        if abs(lat) < 30:
            continue
        summer_months, winter_months = (
            ((5, 6, 7), (11, 0, 1)) if lat > 0 else ((11, 0, 1), (5, 6, 7))
        )
        vegetation = np.isin(sample.labels, spectra.VEGETATION_CODES)
        s2 = sample.record.modalities["sentinel2_l2a"].astype(np.float64)
        for k, month in _clear_steps(sample):
            red, nir = s2[:, :, k, RED][vegetation], s2[:, :, k, NIR][vegetation]
            ndvi = ((nir - red) / (nir + red)).tolist()
            if month in summer_months:
                summer += ndvi
            elif month in winter_months:
                winter += ndvi
    assert len(summer) > 500 and len(winter) > 500
    assert np.mean(summer) > np.mean(winter) + 0.15


def test_worldcover_is_the_label_map_and_metadata_holds_the_majority_class(tmp_path, samples):
    for sample in samples:
        np.testing.assert_array_equal(
            sample.record.modalities["worldcover"][:, :, 0, 0], sample.labels
        )
        codes, counts = np.unique(sample.labels, return_counts=True)
        assert sample.majority_class == codes[np.argmax(counts)]
    config = SyntheticEarthConfig(size=16)
    h5_dir = synthetic.write_synthetic_dataset(tmp_path, 3, 1, config)
    rows = h5_format.read_metadata(h5_dir)
    for index, row in enumerate(rows):
        labels = h5_format.read_sample(h5_format.sample_path(h5_dir, index)).modalities[
            "worldcover"
        ]
        codes, counts = np.unique(labels, return_counts=True)
        assert int(row[synthetic.MAJORITY_CLASS_COLUMN]) == codes[np.argmax(counts)]
        assert row["worldcover"] == "1"


def test_maps_follow_the_land_cover(samples):
    tree_height, other_height, water_low = [], [], []
    for sample in samples:
        maps, labels = sample.record.modalities, sample.labels
        if "wri_canopy_height_map" in maps:
            height = maps["wri_canopy_height_map"][:, :, 0, 0]
            tree_height += height[labels == 10].tolist()
            other_height += height[~np.isin(labels, (10, 20, 95))].tolist()
        if "worldcereal" in maps:
            temporary_crops = maps["worldcereal"][:, :, 0, 0]
            np.testing.assert_array_equal(temporary_crops == 100, labels == 40)
        if "openstreetmap_raster" in maps:
            building = modalities.OPENSTREETMAP_RASTER.storage_bands.index("building")
            assert np.all(labels[maps["openstreetmap_raster"][:, :, 0, building] == 1] == 50)
        lat, lon = sample.record.latlon
        assert ("cdl" in maps) <= (25 <= lat <= 49 and -125 <= lon <= -67)
        if "srtm" in maps and (labels == 80).any() and (labels != 80).any():
            srtm = maps["srtm"][:, :, 0, 0]
            water_low.append(srtm[labels == 80].mean() <= srtm[labels != 80].mean())
    assert np.mean(tree_height) > 8 and np.mean(other_height) < 1
    assert water_low and np.mean(water_low) >= 0.7


def test_clouds_brighten_the_optical_bands(samples):
    compared = 0
    for sample in _with_s2(samples):
        if (sample.labels == 70).any():
            continue  # snow is as bright as cloud tops in the visible
        s2 = sample.record.modalities["sentinel2_l2a"][..., BLUE].astype(np.float64)
        present = np.flatnonzero(sample.record.present_timesteps["sentinel2_l2a"])
        fraction = sample.s2_cloud_fraction[present]
        cloudy, clear = fraction > 0.6, fraction == 0
        if cloudy.any() and clear.any():
            assert s2[:, :, cloudy].mean() > 2 * s2[:, :, clear].mean()
            compared += 1
    assert compared >= 3


def test_s1_backscatter_is_lowest_over_water(samples):
    water, land = [], []
    for sample in samples:
        if "sentinel1" in sample.record.modalities:
            vv = sample.record.modalities["sentinel1"][..., 0].mean(axis=2)
            water += vv[sample.labels == 80].tolist()
            land += vv[sample.labels != 80].tolist()
    assert water and np.mean(water) < np.mean(land) - 5


def test_gaps_are_recorded_and_one_series_is_always_complete(samples):
    for sample in samples:
        record = sample.record
        series = [n for n in ("sentinel2_l2a", "sentinel1", "landsat") if n in record.modalities]
        assert series
        assert any(record.present_timesteps[n].all() for n in series)
        for name in series:
            assert record.modalities[name].shape[2] == record.present_timesteps[name].sum()
    missing_steps = sum(
        not np.all(s.record.present_timesteps.get("landsat", True)) for s in samples
    )
    assert missing_steps > 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"size": 4}, "size"),
        ({"timesteps": 13}, "timesteps"),
        ({"cloudy_step_probability": (0.5, 0.2)}, "cloudy_step_probability"),
        ({"missing_step_probability": {"naip": 0.1}}, "missing_step_probability"),
    ],
)
def test_invalid_config_names_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticEarthConfig(**kwargs)


def test_default_dataset_is_generated_once_into_the_xdg_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    h5_dir = synthetic.ensure_default_dataset(num_samples=2)
    root = tmp_path / "terra-lab" / "synthetic"
    assert h5_dir.is_relative_to(root / f"{synthetic.DATASET_VERSION}-0-2")
    assert len(h5_format.read_metadata(h5_dir)) == 2
    assert os.listdir(root) == [f"{synthetic.DATASET_VERSION}-0-2"]  # no scratch left

    def fail(*args, **kwargs):
        raise AssertionError("regenerated a cached dataset")

    monkeypatch.setattr(synthetic, "write_synthetic_dataset", fail)
    assert synthetic.ensure_default_dataset(num_samples=2) == h5_dir


def test_default_dataset_race_keeps_the_first_complete_copy(tmp_path, monkeypatch):
    real_write = synthetic.write_synthetic_dataset
    final = synthetic.cache_root(tmp_path) / f"{synthetic.DATASET_VERSION}-0-1"

    def write_while_another_process_finishes(out, n, seed, config=None, progress=None):
        real_write(final, n, seed, config)  # the other process renames its copy first
        return real_write(out, n, seed, config)

    monkeypatch.setattr(synthetic, "write_synthetic_dataset", write_while_another_process_finishes)
    h5_dir = synthetic.ensure_default_dataset(tmp_path, num_samples=1)
    assert h5_dir.is_relative_to(final) and (h5_dir / "sample_0.h5").is_file()
    assert os.listdir(final.parent) == [final.name]
