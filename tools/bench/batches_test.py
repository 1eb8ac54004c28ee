"""Benchmark batches: budgeted shapes, deterministic masked views, token counts."""

import torch

from models.modalities.samples import MaskValue
from tools.bench import batches


def test_budget_shape_takes_the_most_timesteps_within_2250_tokens():
    # 9 v1 modalities: 6 static and 6 per-timestep tokens per patch.
    assert batches.budget_shape(2, 4, 4).timesteps == 12  # 96 + 12 * 96 = 1248
    assert batches.budget_shape(2, 4, 8).timesteps == 4  # 384 + 4 * 384 = 1920
    assert batches.budget_shape(2, 2, 8).pixels_per_side == 16


def test_masked_views_are_reproducible_differ_between_views_and_share_the_data():
    shape = batches.budget_shape(2, 2, 3)
    first, again = batches.masked_views(shape, seed=4), batches.masked_views(shape, seed=4)
    for name, mask in first.view_a.masks.items():
        assert torch.equal(mask, again.view_a.masks[name])
    assert not torch.equal(first.view_a.masks["sentinel2_l2a"], first.view_b.masks["sentinel2_l2a"])
    assert first.view_a.data["landsat"] is first.view_b.data["landsat"]


def test_gaps_become_missing_tokens_and_counts_add_up():
    shape = batches.budget_shape(2, 2, 3)
    views = batches.masked_views(shape, seed=0)
    counts = batches.token_counts(views.view_a, shape.patch_size)
    cdl = views.view_a.masks["cdl"]
    assert torch.all(cdl[1] == MaskValue.MISSING) and not torch.all(cdl[0] == MaskValue.MISSING)
    per_instance = 9 * 6 + 9 * 6 * shape.timesteps  # h*w static + per-step tokens
    assert counts.total == 2 * per_instance
    assert 0 < counts.encoder and 0 < counts.decoder
    assert counts.encoder + counts.decoder + counts.missing <= counts.total


def test_fully_visible_batch_has_no_hidden_token():
    view = batches.fully_visible(batches.budget_shape(1, 2, 2))
    for mask in view.masks.values():
        assert torch.all((mask == MaskValue.ONLINE_ENCODER) | (mask == MaskValue.MISSING))
