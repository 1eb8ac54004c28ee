"""The GEO-Bench classification loader, on a tiny m-eurosat-layout fixture written here."""

import json
import os
import pickle
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest

from models.eval import geobench
from models.modalities import modalities

# The 13 band dataset names of GEO-Bench's m-eurosat files.
EUROSAT_BANDS = (
    "01 - Coastal aerosol",
    "02 - Blue",
    "03 - Green",
    "04 - Red",
    "05 - Vegetation Red Edge",
    "06 - Vegetation Red Edge",
    "07 - Vegetation Red Edge",
    "08 - NIR",
    "08A - Vegetation Red Edge",
    "09 - Water vapour",
    "10 - SWIR - Cirrus",
    "11 - SWIR",
    "12 - SWIR",
)


def _geobench_style_pickle(label: int) -> str:
    """The `pickle` attribute as GEO-Bench writes it, with a GEO-Bench class inside.

    The class is registered under a fake `geobench.dataset` module only while pickling, so
    loading must work without it (and must not import it).
    """
    module = types.ModuleType("geobench.dataset")

    class SpectralBand:
        def __init__(self, name: str) -> None:
            self.name = name

    SpectralBand.__module__ = "geobench.dataset"
    SpectralBand.__qualname__ = "SpectralBand"
    module.SpectralBand = SpectralBand
    fakes = {"geobench": types.ModuleType("geobench"), "geobench.dataset": module}
    sys.modules.update(fakes)
    try:
        attributes = {
            "label": label,
            "bands_order": list(EUROSAT_BANDS),
            EUROSAT_BANDS[0]: {"band_info": SpectralBand(EUROSAT_BANDS[0]), "date": None},
        }
        return str(pickle.dumps(attributes))
    finally:
        for name in fakes:
            del sys.modules[name]


def _write_fixture(root: Path, size: int = 10) -> dict[str, int]:
    rng = np.random.default_rng(0)
    labels = {}
    for index in range(8):
        name = f"id_{index:04d}"
        label = index % 2
        labels[name] = label
        with h5py.File(root / f"{name}.hdf5", "w") as h5:
            for band_index, band in enumerate(EUROSAT_BANDS):
                level = 1000.0 + 500.0 * band_index + 3000.0 * label
                h5.create_dataset(band, data=level + rng.normal(0, 50, (size, size)))
            if index == 0:
                h5.attrs["label"] = label
            else:
                h5.attrs["pickle"] = _geobench_style_pickle(label)
    stats = {band: {"mean": 2000.0, "std": 1000.0} for band in EUROSAT_BANDS}
    (root / "band_stats.json").write_text(json.dumps(stats))
    names = sorted(labels)
    partition = {"train": names[:4], "valid": names[4:6], "test": names[6:]}
    (root / "default_partition.json").write_text(json.dumps(partition))
    (root / "0.01x_train_partition.json").write_text(
        json.dumps({"train": names[:2], "valid": names[4:6], "test": names[6:]})
    )
    return labels


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("m-eurosat")
    _write_fixture(root)
    return root


def test_splits_labels_and_band_mapping_follow_the_partition_files(fixture_root: Path) -> None:
    config = geobench.GeoBenchClassificationTaskConfig(root=str(fixture_root), patch_size=4)
    data = config.build().load()
    assert len(data.train) == 4 and len(data.test) == 2
    assert data.train.labels.tolist() == [0, 1, 0, 1]
    assert data.num_classes == 2
    item = data.train.items[1]
    values = item.data["sentinel2_l2a"]
    assert values.shape == (8, 8, 1, 12)  # 10 px centre-cropped to two 4 px patches
    # B8A is stored as band index 8 of the file ("08A"); it must land on our B8A channel.
    b8a = modalities.SENTINEL2_L2A.storage_bands.index("B8A")
    # Stats: mean 2000, std 1000 -> [0, 4000] maps to [0, 1]; file band 8 of a label-1 sample
    # holds 1000 + 500 * 8 + 3000 (band 9 would give 0.125 more).
    expected = (1000.0 + 500.0 * 8 + 3000.0 - 0.0) / 4000.0
    assert float(values[..., b8a].mean()) == pytest.approx(expected, abs=0.02)
    assert item.timestamps.tolist() == [[1, 6, 2020]]


def test_the_low_label_partition_is_read_by_name(fixture_root: Path) -> None:
    config = geobench.GeoBenchClassificationTaskConfig(
        root=str(fixture_root), partition="0.01x_train", test_split="valid"
    )
    data = config.build().load()
    assert len(data.train) == 2 and len(data.test) == 2


def test_geobench_pickles_load_without_importing_geobench() -> None:
    text = _geobench_style_pickle(7)
    loaded = geobench.read_pickled_attributes(text)
    assert loaded["label"] == 7
    assert isinstance(loaded[EUROSAT_BANDS[0]]["band_info"], geobench.Placeholder)
    assert "geobench" not in sys.modules and "geobench.dataset" not in sys.modules


class _Exploit:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_a_pickle_that_would_run_a_command_runs_nothing(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    text = str(pickle.dumps({"label": 1, "x": _Exploit(str(target))}))
    loaded = geobench.read_pickled_attributes(text)
    assert loaded["label"] == 1
    assert not target.exists()


def test_s2_band_names_map_to_our_storage_bands() -> None:
    assert geobench.sentinel2_band("08A - Vegetation Red Edge") == "B8A"
    assert geobench.sentinel2_band("02 - Blue_2020-06-01") == "B02"
    assert geobench.sentinel2_band("10 - SWIR - Cirrus") is None
    assert geobench.sentinel2_band("Red") is None


def test_a_missing_partition_names_the_ones_present(fixture_root: Path) -> None:
    config = geobench.GeoBenchClassificationTaskConfig(root=str(fixture_root), partition="0.2x")
    with pytest.raises(FileNotFoundError, match="default_partition.json"):
        config.build().load()
