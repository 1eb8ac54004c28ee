"""Collate: stacking instances into a Sample and masking it into two independent views."""

import numpy as np
import pytest
import torch

from models.data import collate
from models.data.dataset import DatasetItem
from models.data.testing import PatchMasking
from models.modalities import modalities
from models.modalities.samples import MaskValue

MISSING = modalities.MISSING_VALUE


def _item(index, patch_size=2, size=4, steps=3, skipped=()):
    rng = np.random.default_rng(index)
    s2 = rng.random((size, size, steps, 12), dtype=np.float32)
    s2[:, :, 1, 10:] = MISSING  # the 40 m band set is missing at t = 1
    data = {
        "sentinel2_l2a": s2,
        "srtm": rng.random((size, size, 1, 1), dtype=np.float32),
        "latlon": np.array([0.2, 0.7], dtype=np.float32),
    }
    timestamps = np.stack([np.ones(steps), np.arange(steps), np.full(steps, 2020)], -1)
    return DatasetItem(
        index, f"sample_{index}.h5", patch_size, data, timestamps.astype(np.int64), skipped
    )


def test_stack_items_builds_a_sample_with_a_batch_axis():
    items = [_item(0), _item(1)]
    sample = collate.stack_items(items)
    assert sample.data["sentinel2_l2a"].shape == (2, 4, 4, 3, 12)
    assert sample.data["srtm"].shape == (2, 4, 4, 1, 1)
    assert sample.data["latlon"].shape == (2, 2)
    assert sample.timestamps.shape == (2, 3, 3) and sample.timestamps.dtype == torch.int64
    np.testing.assert_array_equal(sample.data["srtm"][1].numpy(), items[1].data["srtm"])


def test_two_views_are_masked_independently_and_keep_missing():
    batch = collate.collate_two_views(
        [_item(0), _item(1)], PatchMasking(), torch.Generator().manual_seed(0)
    )
    assert batch.patch_size == 2 and batch.batch_size == 2
    mask_a, mask_b = batch.view_a.masks["sentinel2_l2a"], batch.view_b.masks["sentinel2_l2a"]
    assert mask_a.shape == (2, 4, 4, 3, 3)
    assert not torch.equal(mask_a, mask_b)
    for mask in (mask_a, mask_b):
        assert (mask[:, :, :, 1, 2] == MaskValue.MISSING).all()
        assert (mask == MaskValue.DECODER).any() and (mask == MaskValue.ONLINE_ENCODER).any()
    assert batch.view_a.data["sentinel2_l2a"] is batch.view_b.data["sentinel2_l2a"]


def test_same_generator_seed_gives_the_same_views():
    items = [_item(0), _item(1)]
    first = collate.collate_two_views(items, PatchMasking(), torch.Generator().manual_seed(3))
    again = collate.collate_two_views(items, PatchMasking(), torch.Generator().manual_seed(3))
    for name in first.view_a.masks:
        assert torch.equal(first.view_a.masks[name], again.view_a.masks[name])
        assert torch.equal(first.view_b.masks[name], again.view_b.masks[name])


def test_skipped_files_of_all_items_reach_the_batch():
    items = [_item(0, skipped=("sample_7.h5",)), _item(1), _item(2, skipped=("sample_9.h5",))]
    batch = collate.collate_two_views(items, PatchMasking(), torch.Generator().manual_seed(0))
    assert batch.skipped == ("sample_7.h5", "sample_9.h5")


def test_mixed_patch_sizes_or_shapes_are_rejected():
    generator = torch.Generator()
    with pytest.raises(ValueError, match="different patch sizes"):
        collate.collate_two_views(
            [_item(0, patch_size=2), _item(1, patch_size=1)], PatchMasking(), generator
        )
    with pytest.raises(ValueError, match="differ in sentinel2_l2a shape"):
        collate.stack_items([_item(0), _item(1, steps=2)])
    with pytest.raises(ValueError, match="empty"):
        collate.stack_items([])


def test_pin_memory_pins_every_tensor_of_both_views(monkeypatch):
    pinned = []

    def fake_pin(tensor):  # CPU-only torch cannot pin; record the calls instead
        pinned.append(tensor)
        return tensor.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    batch = collate.collate_two_views([_item(0)], PatchMasking(), torch.Generator().manual_seed(0))
    result = batch.pin_memory()
    # per view: 3 data tensors, 3 masks, timestamps
    assert len(pinned) == 2 * 7
    assert result.patch_size == batch.patch_size
    assert torch.equal(result.view_b.masks["srtm"], batch.view_b.masks["srtm"])
