"""Global batch plan: seeded order, per-step patch sizes and data-parallel sharding."""

import numpy as np
import pytest

from models.data.sampler import GlobalBatchPlan

CHOICES = {p: tuple(range(1, 13 - p)) for p in range(1, 9)}


def _plan(**kwargs):
    defaults = dict(
        num_samples=50, global_batch_size=8, seed=1, patches_per_side_by_patch_size=CHOICES
    )
    return GlobalBatchPlan(**{**defaults, **kwargs})


def test_epoch_order_is_a_seeded_permutation_that_changes_by_epoch():
    plan = _plan()
    first = plan.epoch_order(1)
    assert len(first) == 48  # 6 whole batches of 8; the 2-sample tail is dropped
    assert len(set(first.tolist())) == 48
    np.testing.assert_array_equal(first, _plan().epoch_order(1))
    assert not np.array_equal(first, plan.epoch_order(2))
    assert not np.array_equal(first, _plan(seed=2).epoch_order(1))
    np.testing.assert_array_equal(_plan(shuffle=False).epoch_order(3), np.arange(48))


def test_ranks_split_each_global_batch_without_overlap_and_share_the_step_geometry():
    world = 4
    plans = [_plan(rank=r, world_size=world) for r in range(world)]
    single = _plan()
    for batch_index in range(single.batches_per_epoch):
        specs = [plan.spec(1, batch_index) for plan in plans]
        indices = [i for spec in specs for i in spec.dataset_indices]
        assert all(len(spec.dataset_indices) == 2 for spec in specs)
        assert sorted(indices) == sorted(single.global_batch(1, batch_index).tolist())
        assert len({(s.patch_size, s.patches_per_side) for s in specs}) == 1
        assert len({s.masking_seed for s in specs}) == world
        # a sample's crop does not depend on how many ranks share the batch
        crop_of = {
            i: c for s in specs for i, c in zip(s.dataset_indices, s.crop_seeds, strict=True)
        }
        whole = single.spec(1, batch_index)
        assert crop_of == dict(zip(whole.dataset_indices, whole.crop_seeds, strict=True))


def test_patch_size_is_uniform_over_the_range_and_patches_per_side_fit_it():
    plan = _plan(num_samples=8 * 400)
    drawn = [plan.spec(1, b) for b in range(400)]
    counts = np.bincount([s.patch_size for s in drawn], minlength=9)[1:]
    assert (counts > 25).all()  # 400 draws over 8 sizes: 50 expected each
    assert all(s.patches_per_side in CHOICES[s.patch_size] for s in drawn)
    assert len({s.patches_per_side for s in drawn if s.patch_size == 1}) > 5


def test_batch_outside_the_epoch_is_an_error():
    with pytest.raises(IndexError, match="outside 0..5"):
        _plan().spec(1, 6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"global_batch_size": 6, "world_size": 4}, "not divisible"),
        ({"rank": 2, "world_size": 2}, "rank 2"),
        ({"num_samples": 7}, "fewer than one global batch"),
        ({"patches_per_side_by_patch_size": {1: (), 2: (1,)}}, r"patch sizes \[1\]"),
    ],
)
def test_invalid_plans_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _plan(**kwargs)
