"""The H5 sample format: round trips, reference naming, side files and read errors."""

import json
import sys

import h5py
import numpy as np
import pytest

from models.data import h5_format, testing
from models.data.h5_format import CompressionConfig, SampleError


def _record(seed=0, **kwargs):
    return testing.random_record(np.random.default_rng(seed), **kwargs)


@pytest.mark.parametrize(
    "compression",
    [
        CompressionConfig(),
        CompressionConfig(algorithm="gzip", level=4, shuffle=True),
        CompressionConfig(algorithm="zstd", level=3),
    ],
    ids=["raw", "gzip", "zstd"],  # zstd level 3: the official OlmoEarth files
)
def test_round_trip_returns_every_array_mask_and_timestamp_unchanged(tmp_path, compression):
    record = _record(present={"sentinel2_l2a": [True, False, True, True], "landsat": [0, 0, 1, 0]})
    path = tmp_path / "sample_0.h5"
    h5_format.write_sample(path, record, compression)
    back = h5_format.read_sample(path)
    assert set(back.modalities) == set(record.modalities)
    for name, array in record.modalities.items():
        assert back.modalities[name].dtype == array.dtype
        np.testing.assert_array_equal(back.modalities[name], array)
    assert set(back.present_timesteps) == {"sentinel2_l2a", "sentinel1", "landsat"}
    for name, mask in record.present_timesteps.items():
        np.testing.assert_array_equal(back.present_timesteps[name], mask)
    np.testing.assert_array_equal(back.timestamps, record.timestamps)
    np.testing.assert_array_equal(back.latlon, record.latlon)
    assert back.modalities["sentinel2_l2a"].shape[2] == 3  # only present steps are stored


def test_file_layout_matches_the_reference_converter(tmp_path):
    record = _record(present={"sentinel1": [True, True, False, True]})
    path = tmp_path / "sample_0.h5"
    h5_format.write_sample(path, record)
    with h5py.File(path, "r") as h5:
        assert h5["timestamps"].shape == (4, 3)
        assert h5["latlon"].shape == (2,) and h5["latlon"].dtype == np.float32
        assert h5["sentinel1"].shape == (8, 8, 3, 2)
        assert h5["worldcover"].shape == (8, 8, 1, 1)  # static: [H, W, 1, C]
        assert h5["missing_timesteps_masks/sentinel1"].dtype == bool
        assert list(h5["missing_timesteps_masks/sentinel1"][()]) == [True, True, False, True]


def test_reader_accepts_static_maps_stored_without_a_time_axis(tmp_path):
    path = tmp_path / "sample_0.h5"
    srtm = np.arange(16, dtype=np.int16).reshape(4, 4, 1)
    with h5py.File(path, "w") as h5:
        h5["timestamps"] = np.zeros((2, 3), np.int32)
        h5["srtm"] = srtm
    back = h5_format.read_sample(path)
    assert back.modalities["srtm"].shape == (4, 4, 1, 1)
    np.testing.assert_array_equal(back.modalities["srtm"][:, :, 0], srtm)


def test_reader_loads_only_the_requested_modalities(tmp_path):
    path = tmp_path / "sample_0.h5"
    h5_format.write_sample(path, _record())
    back = h5_format.read_sample(path, ["srtm", "sentinel1"])
    assert set(back.modalities) == {"srtm", "sentinel1"}
    assert set(back.present_timesteps) == {"sentinel1"}


def test_dataset_dir_is_named_like_the_reference():
    path = h5_format.dataset_dir(
        "/tiles",
        ["worldcover", "sentinel2_l2a"],
        5,
        CompressionConfig(algorithm="gzip", level=4, shuffle=True),
        128,
        4,
    )
    expected = (
        "/tiles/h5py_data_w_missing_timesteps_gzip_4_shuffle_128_x_4/sentinel2_l2a_worldcover/5"
    )
    assert str(path) == expected
    assert str(h5_format.dataset_dir("/t", ["srtm"], 1)).endswith(
        "h5py_data_w_missing_timesteps_256_x_1/srtm/1"
    )


def test_writer_writes_metadata_latlon_distribution_and_compression_settings(tmp_path):
    records = [_record(0, latlon=(10.0, 20.0)), _record(1, names=["sentinel2_l2a", "srtm"])]
    writer = h5_format.H5DatasetWriter(
        tmp_path,
        ["srtm", "sentinel2_l2a", "worldcover"],
        2,
        CompressionConfig(algorithm="gzip", level=1),
        tile_size=8,
    )
    with pytest.raises(ValueError, match="modalities"):
        writer.write(0, records[0])  # has S1, Landsat, ... which the dataset lacks
    writer.write(0, _record(0, names=["worldcover", "srtm"], latlon=(10.0, 20.0)))
    writer.write(1, records[1], extra={"label": 7})
    h5_dir = writer.finish()
    rows = h5_format.read_metadata(h5_dir)
    assert list(rows[0]) == ["sample_index", "sentinel2_l2a", "worldcover", "srtm", "label"]
    assert [(r["sentinel2_l2a"], r["worldcover"], r["srtm"]) for r in rows] == [
        ("0", "1", "1"),
        ("1", "0", "1"),
    ]
    assert rows[1]["label"] == "7" and rows[0]["label"] == ""
    latlons = np.load(h5_dir / h5_format.LATLON_DISTRIBUTION_FILENAME)
    np.testing.assert_array_equal(latlons[0], [10.0, 20.0])
    settings = json.loads((h5_dir / h5_format.COMPRESSION_SETTINGS_FILENAME).read_text())
    assert settings == {"compression": "gzip", "compression_opts": 1, "shuffle": None}


def test_finish_refuses_a_dataset_with_unwritten_samples(tmp_path):
    writer = h5_format.H5DatasetWriter(tmp_path, ["srtm"], 2)
    writer.write(1, _record(names=["srtm"]))
    with pytest.raises(ValueError, match=r"samples \[0\] were never written"):
        writer.finish()


def test_identical_records_give_byte_identical_files(tmp_path):
    for name in ("a.h5", "b.h5"):
        h5_format.write_sample(
            tmp_path / name, _record(3), CompressionConfig(algorithm="gzip", level=4, shuffle=True)
        )
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


def test_corrupt_or_missing_file_raises_an_error_naming_the_file(tmp_path):
    path = tmp_path / "sample_0.h5"
    path.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(SampleError, match=r"sample_0\.h5: field 'file': not a readable HDF5"):
        h5_format.read_sample(path)
    with pytest.raises(SampleError, match="sample_9.h5"):
        h5_format.read_sample(tmp_path / "sample_9.h5")


def test_file_without_timestamps_is_rejected(tmp_path):
    path = tmp_path / "sample_0.h5"
    with h5py.File(path, "w") as h5:
        h5["srtm"] = np.zeros((2, 2, 1, 1))
    with pytest.raises(SampleError, match="'timestamps': missing"):
        h5_format.read_sample(path)


def test_writer_rejects_records_the_reader_would_reject(tmp_path):
    record = _record(names=["sentinel1"])
    record.modalities["sentinel1"] = record.modalities["sentinel1"][..., :1]
    with pytest.raises(ValueError, match=r"sentinel1 has shape .*expected \[H, W, T, 2\]"):
        h5_format.write_sample(tmp_path / "x.h5", record)
    record = _record(names=["sentinel1"], present={"sentinel1": [True, False, True, True]})
    record.present_timesteps["sentinel1"][1] = True  # mask says 4 steps, data has 3
    with pytest.raises(ValueError, match="stores 3 timesteps; expected 4"):
        h5_format.write_sample(tmp_path / "x.h5", record)


def test_zstd_without_hdf5plugin_explains_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "hdf5plugin", None)  # makes `import hdf5plugin` fail
    with pytest.raises(ImportError, match="pip install hdf5plugin"):
        CompressionConfig(algorithm="zstd", level=3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"algorithm": "lzma"}, "allowed"),
        ({"algorithm": "gzip", "level": 12}, "gzip allows 0..9"),
        ({"level": 3}, "need an algorithm"),
    ],
)
def test_invalid_compression_is_rejected_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CompressionConfig(**kwargs)


@pytest.mark.parametrize(
    "compression",
    [
        CompressionConfig(),
        CompressionConfig(algorithm="gzip", level=4, shuffle=True),
        CompressionConfig(algorithm="zstd", level=3),
    ],
    ids=["raw", "gzip", "zstd"],  # zstd level 3: the official OlmoEarth files
)
def test_open_sample_reads_windows_equal_to_slices_of_the_whole_array(tmp_path, compression):
    record = _record(present={"sentinel2_l2a": [True, False, True, True]})
    path = tmp_path / "sample_0.h5"
    h5_format.write_sample(path, record, compression)
    with h5_format.open_sample(path) as stored:
        s2 = stored.modalities["sentinel2_l2a"]
        assert isinstance(s2, h5_format.StoredArray) and s2.shape == (8, 8, 3, 12)
        window = (slice(2, 6), slice(1, 5), slice(1, 3))
        np.testing.assert_array_equal(s2[window], record.modalities["sentinel2_l2a"][window])
        np.testing.assert_array_equal(stored.timestamps, record.timestamps)


def test_stored_static_map_without_a_time_axis_is_sliced_as_if_it_had_one(tmp_path):
    path = tmp_path / "sample_0.h5"
    srtm = np.arange(16, dtype=np.int16).reshape(4, 4, 1)
    with h5py.File(path, "w") as h5:
        h5["timestamps"] = np.zeros((2, 3), np.int32)
        h5["srtm"] = srtm
    with h5_format.open_sample(path) as stored:
        array = stored.modalities["srtm"]
        assert array.shape == (4, 4, 1, 1) and array.ndim == 4
        np.testing.assert_array_equal(array[1:3, 0:2], srtm[1:3, 0:2, None, :])
        np.testing.assert_array_equal(np.asarray(array), srtm[:, :, None, :])
