"""Data loader: same batches for any worker count, exact resume, DDP sharding, budget, skips."""

import logging
import shutil

import numpy as np
import pytest
import torch

from models.data import crop, h5_format, testing
from models.data.dataset import DatasetConfig
from models.data.loader import DataLoaderConfig
from models.data.testing import PatchMasking
from models.masking.masking import masking_config_from_name
from models.modalities import modalities
from models.modalities.samples import MaskValue, missing_band_set_mask

NAMES = ("sentinel2_l2a", "sentinel1", "srtm", "worldcover", "latlon")


@pytest.fixture(scope="module")
def h5_dir(tmp_path_factory):
    """12 samples of 16 x 16 px; sample i has latitude i, which identifies it in a batch."""
    records = [
        testing.random_record(
            np.random.default_rng(i),
            size=16,
            timesteps=6,
            names=NAMES[:4],
            latlon=(float(i), 0.0),
            present={"sentinel1": [True, i % 2 == 0, True, True, False, True]},
        )
        for i in range(12)
    ]
    return testing.write_dataset(tmp_path_factory.mktemp("loader"), records)


def _loader(h5_dir, rank=0, world_size=1, skip=False, **kwargs):
    dataset = DatasetConfig(
        h5_dir=str(h5_dir), training_modalities=NAMES, normalize=False, skip_bad_samples=skip
    ).build()
    settings = dict(global_batch_size=4, seed=3, max_patch_size=4, patches_per_side=(1, 2, 3, 4))
    config = DataLoaderConfig(**{**settings, **kwargs})
    return config.build(dataset, PatchMasking(), rank=rank, world_size=world_size)


def _ids(batch):
    return [int(round(float(lat))) for lat in batch.view_a.data["latlon"][:, 0]]


def _assert_same(first, second):
    assert first.patch_size == second.patch_size
    for a, b in ((first.view_a, second.view_a), (first.view_b, second.view_b)):
        assert torch.equal(a.timestamps, b.timestamps)
        for name in a.data:
            assert torch.equal(a.data[name], b.data[name]), name
            assert torch.equal(a.masks[name], b.masks[name]), name


def test_batches_are_identical_with_zero_and_two_workers(h5_dir):
    serial = list(_loader(h5_dir, num_workers=0))
    parallel = list(_loader(h5_dir, num_workers=2))
    assert len(serial) == len(parallel) == 3
    for first, second in zip(serial, parallel, strict=True):
        _assert_same(first, second)
    assert sorted(i for batch in serial for i in _ids(batch)) == list(range(12))


def test_resumed_loader_continues_at_the_exact_next_batch(h5_dir):
    original = _loader(h5_dir)
    iterator = iter(original)
    next(iterator), next(iterator)
    state = original.state_dict()
    assert (state["epoch"], state["batches_consumed"]) == (1, 2)
    rest = list(iterator) + list(original)  # last batch of epoch 1, then epoch 2

    resumed = _loader(h5_dir)
    resumed.load_state_dict(state)
    replay = list(resumed) + list(resumed)
    assert len(replay) == len(rest) == 4
    for first, second in zip(rest, replay, strict=True):
        _assert_same(first, second)
    assert resumed.state_dict()["epoch"] == original.state_dict()["epoch"] == 3


def test_epochs_reshuffle_the_samples(h5_dir):
    loader = _loader(h5_dir)
    epoch_one = [_ids(b) for b in loader]
    epoch_two = [_ids(b) for b in loader]
    assert sorted(sum(epoch_two, [])) == list(range(12))
    assert epoch_one != epoch_two


def test_ranks_cover_each_global_batch_without_overlap(h5_dir):
    single = list(_loader(h5_dir))
    ranks = [list(_loader(h5_dir, rank=r, world_size=2)) for r in range(2)]
    for step, whole in enumerate(single):
        parts = [ranks[r][step] for r in range(2)]
        assert {p.patch_size for p in parts} == {whole.patch_size}
        ids = [_ids(p) for p in parts]
        assert all(len(i) == 2 for i in ids) and not set(ids[0]) & set(ids[1])
        assert sorted(ids[0] + ids[1]) == sorted(_ids(whole))
        for part, part_ids in zip(parts, ids, strict=True):  # same crop as on one rank
            for row, sample_id in enumerate(part_ids):
                whole_row = _ids(whole).index(sample_id)
                assert torch.equal(
                    part.view_a.data["sentinel2_l2a"][row],
                    whole.view_a.data["sentinel2_l2a"][whole_row],
                )


def test_every_batch_fits_the_token_budget(h5_dir):
    budget = 120
    loader = _loader(h5_dir, token_budget=budget)
    specs = list(loader.dataset.specs.values())
    seen_sizes = set()
    for _ in range(4):
        for batch in loader:
            s2 = batch.view_a.data["sentinel2_l2a"]
            patches_per_side = s2.shape[1] // batch.patch_size
            static, per_step = crop.token_counts(specs, patches_per_side)
            assert static + s2.shape[3] * per_step <= budget
            seen_sizes.add(batch.patch_size)
    assert len(seen_sizes) >= 3


def test_bad_samples_are_replaced_counted_and_logged(h5_dir, tmp_path, caplog):
    copy = tmp_path / "copy"
    shutil.copytree(h5_dir, copy)
    h5_format.sample_path(copy, 5).write_bytes(b"corrupt")
    loader = _loader(copy, skip=True)
    with caplog.at_level(logging.WARNING, logger="models.data.loader"):
        batches = list(loader)
    assert all(batch.batch_size == 4 for batch in batches)
    assert loader.num_skipped == 1 and loader.state_dict()["num_skipped"] == 1
    assert any(
        "replaced 1 bad samples" in r.message and "sample_5.h5" in r.message for r in caplog.records
    )
    with pytest.raises(h5_format.SampleError, match="sample_5.h5"):
        list(_loader(copy, skip=False))


def test_state_from_another_order_is_refused(h5_dir):
    state = _loader(h5_dir).state_dict()
    with pytest.raises(ValueError, match="seed=3"):
        _loader(h5_dir, seed=4).load_state_dict(state)
    with pytest.raises(ValueError, match="batches_consumed=9"):
        _loader(h5_dir).load_state_dict({**state, "batches_consumed": 9})


def test_build_fails_when_no_window_fits_a_patch_size(h5_dir):
    with pytest.raises(ValueError, match=r"patch sizes \[4\]"):
        _loader(h5_dir, patches_per_side=(5,))  # 4 px x 5 patches > 16 px; 3 x 5 fits
    with pytest.raises(ValueError, match="patch sizes"):
        _loader(h5_dir, patches_per_side=(17,))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"global_batch_size": 0}, "global_batch_size"),
        ({"min_patch_size": 3, "max_patch_size": 2}, "min_patch_size"),
        ({"patches_per_side": ()}, "patches_per_side"),
        ({"prefetch_factor": 2}, "prefetch_factor"),
        ({"multiprocessing_context": "threads"}, "multiprocessing_context"),
    ],
)
def test_invalid_config_names_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DataLoaderConfig(**{"global_batch_size": 2, **kwargs})


def test_loader_runs_the_real_modality_cross_masking_in_workers(h5_dir):
    dataset = DatasetConfig(h5_dir=str(h5_dir), training_modalities=NAMES[:4]).build()
    strategy = masking_config_from_name("modality_cross_random").build()
    config = DataLoaderConfig(
        global_batch_size=4, num_workers=2, seed=3, max_patch_size=4, patches_per_side=(1, 2, 3, 4)
    )
    for batch in config.build(dataset, strategy):
        size = batch.patch_size
        for view in (batch.view_a, batch.view_b):
            decoded = 0
            for name, mask in view.masks.items():
                no_data = missing_band_set_mask(view.data[name], modalities.get(name))
                assert torch.equal(mask == MaskValue.MISSING, no_data), name
                corners = mask[:, ::size, ::size]
                expanded = corners.repeat_interleave(size, 1).repeat_interleave(size, 2)
                assert torch.equal(mask, expanded), name  # constant inside each patch
                decoded += int((mask == MaskValue.DECODER).sum())
            assert decoded > 0
        assert not all(
            torch.equal(batch.view_a.masks[n], batch.view_b.masks[n]) for n in batch.view_a.masks
        )
