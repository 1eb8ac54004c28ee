"""EarthDataset: filling, budgeted crops, normalization and the handling of bad samples."""

import json
import logging

import h5py
import numpy as np
import pytest

from models.data import crop, h5_format, testing
from models.data.dataset import DatasetConfig, GetItemArgs
from models.data.h5_format import SampleError
from models.data.normalize import MissingStatsError, NormalizerConfig
from models.modalities import modalities

MISSING = modalities.MISSING_VALUE


def _dataset_dir(tmp_path, records):
    return testing.write_dataset(tmp_path, records)


def _records(count=3, **kwargs):
    return [testing.random_record(np.random.default_rng(i), **kwargs) for i in range(count)]


def test_missing_modality_is_filled_with_missing_in_the_cropped_shape(tmp_path):
    records = _records(1, names=["sentinel2_l2a", "srtm"])
    dataset = DatasetConfig(h5_dir=str(_dataset_dir(tmp_path, records))).build()
    item = dataset[GetItemArgs(0, patch_size=2, patches_per_side=3)]
    assert set(item.data) == set(modalities.TRAINING_MODALITIES)
    # 9 patches x 6 tokens per step fit 12 steps in 2250 tokens: series padded to 12.
    assert item.data["sentinel1"].shape == (6, 6, 12, 2)
    assert item.data["landsat"].shape == (6, 6, 12, 11)
    assert item.data["worldcereal"].shape == (6, 6, 1, 8)
    for name in ("sentinel1", "landsat", "worldcover", "cdl"):
        assert (item.data[name] == MISSING).all(), name
    assert (item.data["sentinel2_l2a"][:, :, :4] != MISSING).all()
    assert (item.data["sentinel2_l2a"][:, :, 4:] == MISSING).all()
    assert item.timestamps.shape == (12, 3)


def test_missing_timesteps_are_filled_at_their_positions(tmp_path):
    present = {"sentinel2_l2a": [True, False, True, True], "sentinel1": [True, True, True, False]}
    records = _records(1, names=["sentinel2_l2a", "sentinel1"], present=present)
    config = DatasetConfig(
        h5_dir=str(_dataset_dir(tmp_path, records)),
        training_modalities=("sentinel2_l2a", "sentinel1"),
        normalize=False,
    )
    item = config.build()[GetItemArgs(0, patch_size=8, patches_per_side=1)]  # whole 8x8 tile
    stored = records[0].modalities
    s2, s1 = item.data["sentinel2_l2a"], item.data["sentinel1"]
    assert s2.shape == (8, 8, 12, 12)  # padded to 12 steps (the budget allows all)
    assert (s2[:, :, 1] == MISSING).all() and (s2[:, :, 4:] == MISSING).all()
    np.testing.assert_array_equal(s2[:, :, [0, 2, 3]], stored["sentinel2_l2a"])
    assert (s1[:, :, 3:] == MISSING).all()
    np.testing.assert_array_equal(s1[:, :, :3], stored["sentinel1"])
    # Timestamps beyond the series repeat the last real one (the reference's edge padding).
    np.testing.assert_array_equal(item.timestamps[:4], records[0].timestamps)
    assert (item.timestamps[4:] == records[0].timestamps[-1]).all()


def test_series_is_cut_to_the_steps_where_some_modality_has_data(tmp_path):
    present = {
        "sentinel2_l2a": [False, True, False, True],
        "sentinel1": [False, False, True, False],
    }
    records = _records(1, names=["sentinel2_l2a", "sentinel1"], present=present)
    config = DatasetConfig(
        h5_dir=str(_dataset_dir(tmp_path, records)),
        training_modalities=("sentinel2_l2a", "sentinel1"),
        normalize=False,
    )
    item = config.build()[GetItemArgs(0, patch_size=8, patches_per_side=1)]
    np.testing.assert_array_equal(item.timestamps[:3], records[0].timestamps[1:4])
    assert (item.data["sentinel2_l2a"][:, :, [1]] == MISSING).all()
    assert (item.data["sentinel2_l2a"][:, :, [0, 2]] != MISSING).all()
    assert (item.data["sentinel1"][:, :, 1] != MISSING).all()


def test_values_are_normalized_and_missing_values_are_not(tmp_path):
    records = _records(
        1, names=["sentinel2_l2a", "srtm"], present={"sentinel2_l2a": [True, False, True, True]}
    )
    h5_dir = _dataset_dir(tmp_path, records)
    names = ("sentinel2_l2a", "srtm", "latlon")
    args = GetItemArgs(0, patch_size=4, patches_per_side=2, crop_seed=5)
    raw = DatasetConfig(h5_dir=str(h5_dir), training_modalities=names, normalize=False).build()[
        args
    ]
    normalized = DatasetConfig(h5_dir=str(h5_dir), training_modalities=names).build()[args]
    normalizer = NormalizerConfig().build()
    for name in names:
        missing = raw.data[name] == MISSING
        assert (normalized.data[name][missing] == MISSING).all()
        expected = normalizer.normalize(name, raw.data[name])
        np.testing.assert_allclose(normalized.data[name], expected, rtol=1e-6)
    np.testing.assert_allclose(normalized.data["latlon"], [(45 + 90) / 180, (7 + 180) / 360])
    assert (raw.data["sentinel2_l2a"] == MISSING).any()


def test_instances_fit_the_token_budget_for_every_patch_size(tmp_path):
    dataset = DatasetConfig(
        h5_dir=str(_dataset_dir(tmp_path, _records(1, size=16, timesteps=12)))
    ).build()
    specs = list(dataset.specs.values())
    budget = 300
    for patch_size in range(1, 9):
        for patches_per_side in range(1, 16 // patch_size + 1):
            static, per_step = crop.token_counts(specs, patches_per_side)
            if static + per_step > budget:
                continue
            item = dataset[GetItemArgs(0, patch_size, patches_per_side, budget)]
            steps = item.data["sentinel2_l2a"].shape[2]
            assert item.data["sentinel2_l2a"].shape[0] == patches_per_side * patch_size
            assert static + steps * per_step <= budget
            assert item.timestamps.shape[0] == steps


def test_crop_seed_fixes_the_window_and_other_seeds_move_it(tmp_path):
    dataset = DatasetConfig(h5_dir=str(_dataset_dir(tmp_path, _records(1, size=16)))).build()
    first = dataset[GetItemArgs(0, 2, 3, crop_seed=11)].data["srtm"]
    again = dataset[GetItemArgs(0, 2, 3, crop_seed=11)].data["srtm"]
    np.testing.assert_array_equal(first, again)
    others = [dataset[GetItemArgs(0, 2, 3, crop_seed=s)].data["srtm"] for s in range(12, 20)]
    assert any(not np.array_equal(first, other) for other in others)


def test_samples_without_a_multitemporal_modality_are_left_out(tmp_path):
    records = [
        testing.random_record(np.random.default_rng(0), names=["srtm", "sentinel1"]),
        testing.random_record(np.random.default_rng(1), names=["srtm"]),
        testing.random_record(np.random.default_rng(2), names=["srtm", "landsat"]),
    ]
    dataset = DatasetConfig(h5_dir=str(_dataset_dir(tmp_path, records))).build()
    assert len(dataset) == 2
    assert list(dataset.sample_indices) == [0, 2]
    assert dataset[GetItemArgs(1, 2, 2)].source.endswith("sample_2.h5")


def _corrupt(h5_dir, index):
    path = h5_format.sample_path(h5_dir, index)
    path.write_bytes(b"\x89HDF garbage")
    return path


def _rewrite(h5_dir, index, name, array):
    with h5py.File(h5_format.sample_path(h5_dir, index), "r+") as h5:
        del h5[name]
        h5[name] = array


def test_corrupt_file_raises_an_error_naming_the_file(tmp_path):
    h5_dir = _dataset_dir(tmp_path, _records(3))
    dataset = DatasetConfig(h5_dir=str(h5_dir)).build()
    path = _corrupt(h5_dir, 1)
    with pytest.raises(SampleError, match=f"{path}: field 'file'"):
        dataset[GetItemArgs(1, 2, 2)]


def test_wrong_band_count_names_the_file_and_the_field(tmp_path):
    h5_dir = _dataset_dir(tmp_path, _records(2))
    _rewrite(h5_dir, 1, "sentinel1", np.zeros((8, 8, 4, 3), np.float32))
    dataset = DatasetConfig(h5_dir=str(h5_dir)).build()
    with pytest.raises(
        SampleError, match=r"sample_1\.h5: field 'sentinel1': has 3 bands; expected 2"
    ):
        dataset[GetItemArgs(1, 2, 2)]


def test_nan_pixels_name_the_file_and_the_field(tmp_path):
    h5_dir = _dataset_dir(tmp_path, _records(2))
    s1 = np.zeros((8, 8, 4, 2), np.float32)
    s1[0, 0, 0, 0] = s1[3, 2, 1, 1] = np.nan
    _rewrite(h5_dir, 0, "sentinel1", s1)
    dataset = DatasetConfig(h5_dir=str(h5_dir)).build()
    with pytest.raises(SampleError, match=r"sample_0\.h5: field 'sentinel1': has 2 NaN pixels"):
        dataset[GetItemArgs(0, 2, 2)]


def test_timestep_mask_that_disagrees_with_the_data_names_the_mask(tmp_path):
    h5_dir = _dataset_dir(tmp_path, _records(1))
    _rewrite(h5_dir, 0, "missing_timesteps_masks/landsat", np.array([True, False, True, True]))
    dataset = DatasetConfig(h5_dir=str(h5_dir)).build()
    with pytest.raises(SampleError, match="'landsat': stores 4 timesteps; the mask says 3"):
        dataset[GetItemArgs(0, 2, 2)]


def test_missing_stats_entry_fails_at_build_naming_modality_band_and_file(tmp_path):
    h5_dir = _dataset_dir(tmp_path, _records(1))
    stats = tmp_path / "stats"
    stats.mkdir()
    (stats / "computed.json").write_text(json.dumps({"sentinel1": {"vv": {"mean": 0, "std": 1}}}))
    (stats / "predefined.json").write_text(json.dumps({}))
    config = DatasetConfig(
        h5_dir=str(h5_dir),
        training_modalities=("sentinel1",),
        normalizer=NormalizerConfig(stats_dir=str(stats)),
    )
    with pytest.raises(MissingStatsError, match=r"'sentinel1' band 'vv'.*predefined\.json"):
        config.build()


def test_skip_bad_samples_replaces_counts_and_logs_each_bad_sample(tmp_path, caplog):
    h5_dir = _dataset_dir(tmp_path, _records(4))
    dataset = DatasetConfig(h5_dir=str(h5_dir), skip_bad_samples=True).build()
    bad = [_corrupt(h5_dir, 1), _corrupt(h5_dir, 2)]
    with caplog.at_level(logging.WARNING, logger="models.data.dataset"):
        item = dataset[GetItemArgs(1, 2, 2)]
    assert item.source.endswith("sample_3.h5")
    assert item.skipped == tuple(str(path) for path in bad)
    assert dataset.num_skipped == 2
    assert sum("skipping bad sample" in r.message for r in caplog.records) == 2
    assert dataset[GetItemArgs(0, 2, 2)].skipped == ()


def test_skip_gives_up_after_max_skips_consecutive_bad_samples(tmp_path):
    h5_dir = _dataset_dir(tmp_path, _records(3))
    dataset = DatasetConfig(h5_dir=str(h5_dir), skip_bad_samples=True, max_skips_per_item=1).build()
    _corrupt(h5_dir, 0)
    _corrupt(h5_dir, 1)
    with pytest.raises(RuntimeError, match="2 consecutive samples from index 0 are bad"):
        dataset[GetItemArgs(0, 2, 2)]


def test_window_larger_than_the_sample_is_a_sample_error(tmp_path):
    dataset = DatasetConfig(h5_dir=str(_dataset_dir(tmp_path, _records(1)))).build()
    assert dataset.image_size == 8
    with pytest.raises(SampleError, match="'shape': is 8x8 pixels; the window is 9px"):
        dataset[GetItemArgs(0, 3, 3)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"training_modalities": ()}, "training_modalities is empty"),
        ({"training_modalities": ("sentinel3",)}, "unknown"),
        ({"training_modalities": ("latlon",)}, "needs a spatial modality"),
        ({"dtype": "float16"}, "dtype"),
        ({"max_timesteps": 0}, "max_timesteps"),
    ],
)
def test_invalid_config_names_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DatasetConfig(h5_dir="/nonexistent", **kwargs)


def test_build_of_a_missing_directory_names_it():
    with pytest.raises(FileNotFoundError, match="/nonexistent/h5"):
        DatasetConfig(h5_dir="/nonexistent/h5").build()
