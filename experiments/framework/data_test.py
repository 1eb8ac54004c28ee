"""The default dataset's path is known without generating it."""

from __future__ import annotations

from pathlib import Path

from experiments.framework import data


def test_default_dataset_dir_is_where_the_generator_writes(tmp_path: Path) -> None:
    from models.data import synthetic

    produced = synthetic.ensure_default_dataset(cache_dir=tmp_path, num_samples=2)
    assert data.default_dataset_dir(cache_dir=str(tmp_path), num_samples=2) == produced


def test_another_data_folder_is_not_generated(tmp_path: Path) -> None:
    assert data.ensure_dataset(str(tmp_path / "mine")) is False
    assert not (tmp_path / "mine").exists()
