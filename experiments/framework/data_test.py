"""The data section: the default dataset's path is known without generating it, and the
masked loader config masks the batches it builds."""

from __future__ import annotations

from pathlib import Path

from experiments.framework import data, testing
from models.modalities.samples import MaskValue


def test_default_dataset_dir_is_where_the_generator_writes(tmp_path: Path) -> None:
    from models.data import synthetic

    produced = synthetic.ensure_default_dataset(cache_dir=tmp_path, num_samples=2)
    assert data.default_dataset_dir(cache_dir=str(tmp_path), num_samples=2) == produced


def test_another_data_folder_is_not_generated(tmp_path: Path) -> None:
    assert data.ensure_dataset(str(tmp_path / "mine")) is False
    assert not (tmp_path / "mine").exists()


def test_the_masked_loader_yields_two_views_masked_by_its_strategy(tmp_path: Path) -> None:
    from models.data.dataset import DatasetConfig

    h5_dir = testing.write_tiny_dataset(tmp_path, num_samples=2)
    config = data.MaskedDataLoaderConfig(
        global_batch_size=2, token_budget=64, masking=data.v1_masking()
    )
    batch = next(iter(config.build_loader(DatasetConfig(h5_dir=str(h5_dir)).build())))
    s2 = batch.view_a.masks["sentinel2_l2a"]
    assert (s2 == MaskValue.ONLINE_ENCODER).any() and (s2 == MaskValue.DECODER).any()
    assert not (batch.view_a.masks["worldcover"] == MaskValue.ONLINE_ENCODER).any()
