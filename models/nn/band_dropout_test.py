"""BandDropout: U(0, max) rate, whole bands per sample, at least one kept, off until enabled."""

from __future__ import annotations

import pytest
import torch

from models.nn.band_dropout import BandDropout


def _enabled(max_rate: float = 0.2, random_rate: bool = True) -> BandDropout:
    dropout = BandDropout(max_rate, random_rate)
    dropout.enable()
    return dropout.train()


def _kept_bands(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """[B, C] bool: bands left unchanged (inputs are nonzero everywhere)."""
    return (out == x).flatten(1, -2).all(dim=1)


def test_is_the_identity_until_enabled_and_in_eval_mode():
    x = torch.rand(4, 3, 3, 2, 12) + 1.0
    dropout = BandDropout(0.9, random_rate=False).train()
    assert torch.equal(dropout(x), x)
    dropout.enable()
    assert not torch.equal(dropout(x), x)
    dropout.eval()
    assert torch.equal(dropout(x), x)


def test_drops_whole_bands_of_each_sample_across_pixels_and_timesteps():
    torch.manual_seed(0)
    x = torch.rand(8, 5, 5, 3, 12) + 1.0
    out = _enabled(0.5, random_rate=False)(x)
    zero = (out == 0).flatten(1, -2)  # [B, pixels * T, C]
    # Every band of every sample is either zero everywhere or untouched everywhere.
    assert torch.equal(zero.all(dim=1), zero.any(dim=1))
    kept = _kept_bands(x, out)
    assert torch.equal(kept, ~zero.all(dim=1))
    assert zero.all(dim=1).any() and kept.any()  # some bands dropped, some kept
    # Samples draw independently: not all samples share one pattern.
    assert not (kept == kept[0]).all()


def test_keeps_at_least_one_band_even_at_a_rate_near_one():
    torch.manual_seed(1)
    x = torch.rand(64, 2, 2, 1, 11) + 1.0
    out = _enabled(0.999, random_rate=False)(x)
    kept = _kept_bands(x, out)
    assert (kept.sum(dim=1) >= 1).all()
    assert (kept.sum(dim=1) == 1).float().mean() > 0.9  # almost all were rescued to one band


def test_a_single_band_is_never_dropped():
    x = torch.rand(16, 2, 2, 1, 1) + 1.0
    assert torch.equal(_enabled(0.999, random_rate=False)(x), x)


def test_random_rate_is_uniform_up_to_the_max_rate():
    torch.manual_seed(2)
    dropout = _enabled(0.2)
    rates = torch.tensor([dropout.draw_rate(torch.device("cpu")) for _ in range(4000)])
    assert rates.min() >= 0.0 and rates.max() < 0.2
    # U(0, 0.2): mean 0.1, std 0.2 / sqrt(12) = 0.0577; each quartile holds a quarter.
    assert abs(rates.mean().item() - 0.1) < 0.005
    assert abs(rates.std().item() - 0.2 / 12**0.5) < 0.005
    counts = torch.histc(rates, bins=4, min=0.0, max=0.2)
    assert ((counts / 4000 - 0.25).abs() < 0.03).all()


def test_dropped_fraction_follows_the_drawn_rate():
    """Over many calls with C = 12, the mean dropped fraction is E[rate] = 0.1 (the at-least-one
    rescue changes it by < 1e-9 at these rates), and a fixed rate drops that fraction."""
    torch.manual_seed(3)
    x = torch.ones(256, 1, 1, 1, 12)
    random_rate = _enabled(0.2)
    dropped = torch.stack([1 - _kept_bands(x, random_rate(x)).float().mean() for _ in range(200)])
    assert abs(dropped.mean().item() - 0.1) < 0.01
    assert dropped.std() > 0.03  # the rate itself varies per call
    fixed = _enabled(0.2, random_rate=False)
    dropped = torch.stack([1 - _kept_bands(x, fixed(x)).float().mean() for _ in range(50)])
    assert abs(dropped.mean().item() - 0.2) < 0.01


def test_same_seed_same_masks_different_seed_different_masks():
    x = torch.rand(8, 2, 2, 2, 12) + 1.0
    dropout = _enabled(0.2)
    torch.manual_seed(7)
    first = dropout(x)
    torch.manual_seed(7)
    assert torch.equal(dropout(x), first)
    torch.manual_seed(8)
    assert not torch.equal(dropout(x), first)


def test_gradient_is_zero_for_dropped_bands_only():
    torch.manual_seed(4)
    x = (torch.rand(4, 2, 2, 1, 12) + 1.0).requires_grad_()
    out = _enabled(0.5, random_rate=False)(x)
    out.sum().backward()
    kept = _kept_bands(x.detach(), out.detach())
    expected = kept[:, None, None, None, :].float().expand_as(x)
    assert torch.equal(x.grad, expected)


def test_rejects_a_rate_outside_zero_to_one():
    with pytest.raises(ValueError, match="max_rate must be in \\[0, 1\\)"):
        BandDropout(1.0)
