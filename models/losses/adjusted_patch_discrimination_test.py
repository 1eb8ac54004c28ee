"""Adjusted patch discrimination: explicit values and gradients, limits, token selection."""

import math

import pytest
import torch
import torch.nn.functional as F

from models.losses.adjusted_patch_discrimination import (
    AdjustedPatchDiscriminationLoss,
    AdjustedPatchDiscriminationLossConfig,
)
from models.losses.patch_discrimination import PatchDiscriminationLoss
from models.modalities.samples import MaskValue, TokensAndMasks

DEC = int(MaskValue.DECODER)


def _pair(pred_BND, target_BND, decoded_BN=None):
    """Two modalities splitting each sample's N tokens, to exercise the flattening."""
    batch, n, width = pred_BND.shape
    if decoded_BN is None:
        decoded_BN = torch.ones(batch, n, dtype=torch.bool)
    mask_BN = torch.where(decoded_BN, DEC, int(MaskValue.TARGET_ONLY)).to(torch.int8)
    split = n // 2

    def side(x_BND):
        return {
            "sentinel1": x_BND[:, :split].reshape(batch, split, 1, 1, 1, width),
            "srtm": x_BND[:, split:].reshape(batch, n - split, 1, 1, 1, width),
        }

    masks = {
        "sentinel1": mask_BN[:, :split].reshape(batch, split, 1, 1, 1),
        "srtm": mask_BN[:, split:].reshape(batch, n - split, 1, 1, 1),
    }
    return TokensAndMasks(side(pred_BND), masks), TokensAndMasks(side(target_BND), masks)


def _explicit_sample(pred_ND, target_ND, tau, mu, sigma):
    """The formula of the module docstring, one row at a time, weights as constants."""
    p = F.normalize(pred_ND, dim=-1)
    t = F.normalize(target_ND, dim=-1)
    losses = []
    n = p.shape[0]
    for i in range(n):
        similarity = p[i] @ t.T
        others = [j for j in range(n) if j != i]
        gaussian = torch.exp(-((similarity.detach() - mu) ** 2) / (2 * sigma**2))
        gaussian = gaussian / (sigma * math.sqrt(2 * math.pi))
        logits = similarity / tau
        if others:
            weights = torch.ones(n, dtype=p.dtype)
            weights[others] = gaussian[others] / gaussian[others].mean()
            logits = logits * weights
        losses.append(2 * tau * (torch.logsumexp(logits, 0) - logits[i]))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("tau, mu, sigma", [(0.1, 0.7, 1.0), (0.2, 0.0, 0.25)])
def test_value_and_gradient_match_the_explicit_formula(tau, mu, sigma):
    generator = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 2, 6, 8, generator=generator, dtype=torch.float64)
    decoded = torch.ones(2, 6, dtype=torch.bool)
    decoded[1, 4:] = False  # samples of 6 and 4 decoded tokens: padding is exercised
    ours_in, explicit_in = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    loss = AdjustedPatchDiscriminationLoss(tau=tau, mu=mu, sigma=sigma)(
        *_pair(ours_in, target, decoded)
    )
    explicit = (
        _explicit_sample(explicit_in[0], target[0], tau, mu, sigma)
        + _explicit_sample(explicit_in[1, :4], target[1, :4], tau, mu, sigma)
    ) / 2
    assert loss.item() == pytest.approx(explicit.item(), abs=1e-9)
    loss.backward()
    explicit.backward()
    torch.testing.assert_close(ours_in.grad, explicit_in.grad, atol=1e-9, rtol=0)
    assert (ours_in.grad[1, 4:] == 0).all()


def test_a_very_wide_gaussian_gives_plain_patch_discrimination():
    generator = torch.Generator().manual_seed(1)
    pred, target = torch.randn(2, 3, 6, 8, generator=generator)
    # sigma 1e4: every weight is within 1e-8 of the mean, so all weights are 1.
    adjusted = AdjustedPatchDiscriminationLoss(sigma=1e4)(*_pair(pred, target))
    plain = PatchDiscriminationLoss()(*_pair(pred, target))
    assert adjusted.item() == pytest.approx(plain.item(), abs=1e-6)


def test_hard_negatives_near_mu_weigh_more():
    # Token 0's negatives: target 1 at similarity mu (weight up), target 2 far from it.
    pred = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    target = torch.tensor([[[1.0, 0.0, 0.0], [0.7, 0.71414, 0.0], [-1.0, 0.0, 0.01]]])
    narrow = AdjustedPatchDiscriminationLoss(mu=0.7, sigma=0.1)(*_pair(pred, target))
    plain = PatchDiscriminationLoss()(*_pair(pred, target))
    assert narrow > plain


def test_single_decoded_token_adds_zero_and_empty_samples_are_left_out():
    generator = torch.Generator().manual_seed(2)
    pred, target = torch.randn(2, 3, 4, 8, generator=generator)
    decoded = torch.ones(3, 4, dtype=torch.bool)
    decoded[1] = False
    decoded[2, 1:] = False  # one token: no negative, loss 0 for that sample
    loss_fn = AdjustedPatchDiscriminationLoss()
    mixed = loss_fn(*_pair(pred, target, decoded))
    alone = loss_fn(*_pair(pred[:1], target[:1]))
    assert torch.isfinite(mixed)
    assert mixed.item() == pytest.approx(alone.item() / 2, abs=1e-6)


def test_only_decoder_tokens_get_gradients_and_targets_get_none():
    generator = torch.Generator().manual_seed(3)
    pred, target = torch.randn(2, 2, 6, 8, generator=generator)
    decoded = torch.rand(2, 6, generator=generator) < 0.5
    decoded[:, :2] = True
    pred.requires_grad_()
    target.requires_grad_()
    AdjustedPatchDiscriminationLoss(pred2unit=True)(*_pair(pred, target, decoded)).backward()
    assert target.grad is None
    assert torch.isfinite(pred.grad).all()
    assert (pred.grad[~decoded] == 0).all()
    assert (pred.grad[decoded].abs().sum(-1) > 0).all()


def test_no_decoded_token_gives_a_zero_that_backpropagates():
    pred = torch.randn(2, 4, 8).requires_grad_()
    loss = AdjustedPatchDiscriminationLoss()(
        *_pair(pred, torch.randn(2, 4, 8), torch.zeros(2, 4, dtype=torch.bool))
    )
    assert loss.item() == 0.0
    loss.backward()
    assert (pred.grad == 0).all()


def test_config_builds_the_loss_and_rejects_bad_values():
    built = AdjustedPatchDiscriminationLossConfig(mu=0.5, sigma=2.0, weight=0.3).build()
    assert (built.tau, built.mu, built.sigma, built.weight) == (0.1, 0.5, 2.0, 0.3)
    with pytest.raises(ValueError, match="sigma must be a number > 0"):
        AdjustedPatchDiscriminationLossConfig(sigma=0.0)
    with pytest.raises(ValueError, match="mu must be a number"):
        AdjustedPatchDiscriminationLossConfig(mu="high")
