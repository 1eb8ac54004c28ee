"""The synthetic land-cover task: generator labels, whole tiles, observations-only inputs."""

from pathlib import Path

import numpy as np
import pytest

from models.data import h5_format, synthetic
from models.eval import landcover
from models.modalities import modalities


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = synthetic.SyntheticEarthConfig(size=16, timesteps=2)
    return synthetic.write_synthetic_dataset(tmp_path_factory.mktemp("lc"), 4, 7, config)


def test_tile_labels_are_the_generators_majority_class_and_inputs_exclude_maps(
    tiny_dataset: Path,
) -> None:
    task = landcover.LandCoverTaskConfig(
        h5_dir=str(tiny_dataset), patch_size=8, train_fraction=0.5
    ).build()
    data = task.load()
    assert len(data.train) == 2 and len(data.test) == 2
    rows = h5_format.read_metadata(tiny_dataset)
    codes = [int(row[synthetic.MAJORITY_CLASS_COLUMN]) for row in rows]
    expected = [modalities.WORLDCOVER_CLASSES.index(code) for code in codes]
    assert [*data.train.labels.tolist(), *data.test.labels.tolist()] == expected
    for item in [*data.train.items, *data.test.items]:
        assert set(item.data) <= {"sentinel2_l2a", "sentinel1", "landsat"}
        assert item.data["sentinel2_l2a"].shape[:2] == (16, 16)  # the whole tile


def test_patch_labels_are_the_majority_class_of_each_patch(tiny_dataset: Path) -> None:
    data = landcover.LandCoverTaskConfig(h5_dir=str(tiny_dataset), patch_size=8).build().load()
    record = h5_format.read_sample(h5_format.sample_path(tiny_dataset, 0), ("worldcover",))
    codes = record.modalities["worldcover"][:8, 8:16, 0, 0]  # patch row 0, column 1
    values, counts = np.unique(codes, return_counts=True)
    majority = values[counts == counts.max()].min()
    expected = modalities.WORLDCOVER_CLASSES.index(int(majority))
    assert data.train.patch_labels is not None
    assert data.train.patch_labels.shape == (len(data.train), 2, 2)
    assert int(data.train.patch_labels[0, 0, 1]) == expected


def test_patch_majority_breaks_ties_towards_the_smaller_class() -> None:
    class_map = np.array([[3, 1], [1, 3]])
    assert landcover.patch_majority(class_map, 2, 11).tolist() == [[1]]


def test_a_patch_size_that_does_not_divide_the_tile_is_refused(tiny_dataset: Path) -> None:
    task = landcover.LandCoverTaskConfig(h5_dir=str(tiny_dataset), patch_size=3).build()
    with pytest.raises(ValueError, match="not a multiple of patch_size 3"):
        task.load()


def test_unknown_worldcover_codes_are_refused() -> None:
    with pytest.raises(ValueError, match="not WorldCover codes"):
        landcover.worldcover_indices(np.array([10, 15]))


def test_the_label_map_cannot_be_an_input() -> None:
    with pytest.raises(ValueError, match="decode-only"):
        landcover.LandCoverTaskConfig(input_modalities=("sentinel2_l2a", "worldcover"))


def test_every_tile_keeps_the_same_positions_of_its_year(tiny_dataset: Path) -> None:
    whole = landcover.LandCoverTaskConfig(
        h5_dir=str(tiny_dataset), patch_size=8, timesteps=None, token_budget=None
    )
    picked = landcover.LandCoverTaskConfig(h5_dir=str(tiny_dataset), patch_size=8, timesteps=(0, 1))
    all_steps, some_steps = whole.build().load(), picked.build().load()
    for full, part in zip(all_steps.train.items, some_steps.train.items, strict=True):
        assert part.timestamps.tolist() == full.timestamps[[0, 1]].tolist()
        for name in ("sentinel2_l2a", "sentinel1", "landsat"):
            assert np.array_equal(part.data[name], full.data[name][:, :, [0, 1]])


def test_timesteps_and_a_token_budget_are_exclusive() -> None:
    with pytest.raises(ValueError, match="timesteps or token_budget, not both"):
        landcover.LandCoverTaskConfig(timesteps=(0, 6), token_budget=768)
    with pytest.raises(ValueError, match="increasing positions"):
        landcover.LandCoverTaskConfig(timesteps=(6, 0))
