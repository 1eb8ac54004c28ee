"""The masked loader config masks the batches it builds with its own strategy."""

from __future__ import annotations

from pathlib import Path

from models.data import synthetic
from models.data.dataset import DatasetConfig
from models.data.masked_loader import MaskedDataLoaderConfig, v1_masking
from models.modalities.samples import MaskValue


def test_the_masked_loader_yields_two_views_masked_by_its_strategy(tmp_path: Path) -> None:
    # 16 pixels, 3 timesteps: the smallest samples a 64-token budget still draws steps from.
    small = synthetic.SyntheticEarthConfig(size=16, timesteps=3)
    h5_dir = synthetic.write_synthetic_dataset(tmp_path, 2, 0, small)
    config = MaskedDataLoaderConfig(global_batch_size=2, token_budget=64, masking=v1_masking())
    batch = next(iter(config.build_loader(DatasetConfig(h5_dir=str(h5_dir)).build())))
    s2 = batch.view_a.masks["sentinel2_l2a"]
    assert (s2 == MaskValue.ONLINE_ENCODER).any() and (s2 == MaskValue.DECODER).any()
    assert not (batch.view_a.masks["worldcover"] == MaskValue.ONLINE_ENCODER).any()
