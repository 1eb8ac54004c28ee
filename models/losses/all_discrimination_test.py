"""AllDisc and its per-modality sum: values, batch-wide negatives, averaging, pred2unit, grads."""

import math

import pytest
import torch
import torch.nn.functional as F

from models.losses.all_discrimination import (
    AllDiscriminationLoss,
    AllDiscriminationLossConfig,
    ModalityAllDiscriminationLoss,
    ModalityAllDiscriminationLossConfig,
)
from models.losses.patch_discrimination import PatchDiscriminationLoss
from models.modalities.samples import MaskValue, TokensAndMasks

DEC = int(MaskValue.DECODER)


def _views(seed=0, batch=3, width=8):
    """S2 and SRTM tokens with random masks; every sample decodes >= 2 tokens of each."""
    generator = torch.Generator().manual_seed(seed)
    tokens = {
        "sentinel2_l2a": torch.randn(batch, 2, 2, 2, 3, width, generator=generator),
        "srtm": torch.randn(batch, 3, 3, 1, 1, width, generator=generator),
    }
    targets = {name: torch.randn(t.shape, generator=generator) for name, t in tokens.items()}
    masks = {
        name: torch.randint(0, 4, t.shape[:-1], generator=generator).to(torch.int8)
        for name, t in tokens.items()
    }
    for mask in masks.values():
        mask.view(batch, -1)[:, :2] = DEC
    return tokens, targets, masks


def _column(vectors_BND, decoded_BN=None):
    """One modality laid out as [B, h=N, w=1, T=1, S=1, D] with its mask."""
    batch, n, width = vectors_BND.shape
    if decoded_BN is None:
        decoded_BN = torch.ones(batch, n, dtype=torch.bool)
    mask = torch.where(decoded_BN, DEC, int(MaskValue.ONLINE_ENCODER)).to(torch.int8)
    return vectors_BND.reshape(batch, n, 1, 1, 1, width), mask.reshape(batch, n, 1, 1, 1)


def _pair(pred_BND, target_BND, decoded_BN=None, name="sentinel1"):
    pred, mask = _column(pred_BND, decoded_BN)
    target, _ = _column(target_BND, decoded_BN)
    return TokensAndMasks({name: pred}, {name: mask}), TokensAndMasks({name: target}, {name: mask})


def _explicit(pred_BND, target_BND, decoded_BN, tau):
    """Row by row: every decoded token of the batch is a candidate; per-sample means / B."""
    batch = pred_BND.shape[0]
    owner = torch.arange(batch)[:, None].expand_as(decoded_BN)[decoded_BN]
    p = F.normalize(pred_BND.double()[decoded_BN], dim=-1)
    t = F.normalize(target_BND.double()[decoded_BN], dim=-1)
    total = 0.0
    for i in range(p.shape[0]):
        logits = p[i] @ t.T / tau
        loss = 2 * tau * (torch.logsumexp(logits, 0) - logits[i])
        total += loss / (owner == owner[i]).sum()
    return total / batch


def test_aligned_orthonormal_tokens_give_the_closed_form_value():
    targets = torch.linalg.qr(torch.randn(16, 6, generator=torch.Generator().manual_seed(0)))[0]
    target_BND = targets.T.reshape(2, 3, 16)  # 6 orthonormal targets, 3 per sample
    loss = AllDiscriminationLoss(tau=0.1)(*_pair(target_BND * 4.0, target_BND))
    # Diagonal logit 10, the 5 other tokens of the batch 0: 2 tau * log(1 + 5 e^-10).
    assert loss.item() == pytest.approx(0.2 * math.log(1 + 5 * math.exp(-10)), abs=2e-6)


def test_value_matches_an_explicit_row_by_row_computation():
    generator = torch.Generator().manual_seed(1)
    pred, target = torch.randn(2, 3, 5, 8, generator=generator)
    decoded = torch.rand(3, 5, generator=generator) < 0.6
    decoded[:, 0] = True
    loss = AllDiscriminationLoss(tau=0.2)(*_pair(pred, target, decoded))
    assert loss.item() == pytest.approx(_explicit(pred, target, decoded, 0.2).item(), abs=1e-6)


def test_other_samples_are_negatives():
    generator = torch.Generator().manual_seed(2)
    pred, target = torch.randn(2, 2, 4, 8, generator=generator)
    patch, all_disc = PatchDiscriminationLoss(), AllDiscriminationLoss()
    # One sample: the same candidates as per-sample patch discrimination.
    assert all_disc(*_pair(pred[:1], target[:1])).item() == pytest.approx(
        patch(*_pair(pred[:1], target[:1])).item(), abs=1e-6
    )
    # Two samples: sample 1's targets join sample 0's softmax (4 more negatives).
    assert all_disc(*_pair(pred, target)) > patch(*_pair(pred, target))


def test_a_sample_without_decoded_tokens_still_counts_in_the_batch_mean():
    generator = torch.Generator().manual_seed(3)
    pred, target = torch.randn(2, 3, 4, 8, generator=generator)
    decoded = torch.ones(3, 4, dtype=torch.bool)
    decoded[2] = False
    with_empty = AllDiscriminationLoss()(*_pair(pred, target, decoded))
    without = AllDiscriminationLoss()(*_pair(pred[:2], target[:2]))
    assert with_empty.item() == pytest.approx(without.item() * 2 / 3, abs=1e-6)


def test_only_decoder_tokens_matter_and_only_they_get_gradients():
    tokens, targets, masks = _views()
    loss_fn = AllDiscriminationLoss()
    before = loss_fn(TokensAndMasks(tokens, masks), TokensAndMasks(targets, masks))
    for name in tokens:
        other = masks[name] != DEC
        tokens[name][other] = 100.0
        targets[name][other] = -3.0
    tokens = {name: t.requires_grad_() for name, t in tokens.items()}
    after = loss_fn(TokensAndMasks(tokens, masks), TokensAndMasks(targets, masks))
    assert after.item() == pytest.approx(before.item(), abs=1e-6)
    after.backward()
    for name in tokens:
        grad = tokens[name].grad
        assert torch.isfinite(grad).all()
        assert (grad[masks[name] != DEC] == 0).all()
        assert (grad[masks[name] == DEC].abs().sum(-1) > 0).all()


def test_no_decoded_token_gives_a_zero_that_backpropagates():
    tokens, targets, masks = _views()
    tokens = {name: t.requires_grad_() for name, t in tokens.items()}
    masks = {name: torch.zeros_like(m) for name, m in masks.items()}
    for loss_fn in (AllDiscriminationLoss(pred2unit=True), ModalityAllDiscriminationLoss()):
        loss = loss_fn(TokensAndMasks(tokens, masks), TokensAndMasks(targets, masks))
        assert loss.item() == 0.0
        loss.backward()
        assert (tokens["srtm"].grad == 0).all()


def test_pred2unit_makes_the_loss_blind_to_per_feature_shift_and_scale():
    generator = torch.Generator().manual_seed(4)
    pred, target = torch.randn(2, 2, 6, 8, generator=generator)
    shift, scale = torch.randn(8, generator=generator), torch.rand(8, generator=generator) + 0.5
    standardized = AllDiscriminationLoss(pred2unit=True)
    plain = AllDiscriminationLoss()
    assert standardized(*_pair(pred * scale + shift, target)).item() == pytest.approx(
        standardized(*_pair(pred, target)).item(), abs=1e-4
    )
    assert plain(*_pair(pred * scale + shift, target)) != pytest.approx(
        plain(*_pair(pred, target)).item(), abs=1e-3
    )


def test_pred2unit_statistics_ignore_tokens_that_are_not_decoded_even_when_not_finite():
    generator = torch.Generator().manual_seed(5)
    pred, target = torch.randn(2, 2, 6, 8, generator=generator)
    decoded = torch.ones(2, 6, dtype=torch.bool)
    decoded[:, 4:] = False
    poisoned = pred.clone()
    poisoned[:, 4:] = float("nan")
    poisoned.requires_grad_()
    loss_fn = AllDiscriminationLoss(pred2unit=True)
    loss = loss_fn(*_pair(poisoned, target, decoded))
    assert loss.item() == pytest.approx(loss_fn(*_pair(pred[:, :4], target[:, :4])).item())
    loss.backward()
    assert torch.isfinite(poisoned.grad).all()


def test_modality_all_discrimination_sums_one_all_discrimination_per_modality():
    tokens, targets, masks = _views()
    per_modality = ModalityAllDiscriminationLoss(weight=0.5)(
        TokensAndMasks(tokens, masks), TokensAndMasks(targets, masks)
    )
    expected = sum(
        AllDiscriminationLoss()(
            TokensAndMasks({name: tokens[name]}, {name: masks[name]}),
            TokensAndMasks({name: targets[name]}, {name: masks[name]}),
        )
        for name in tokens
    )
    assert per_modality.item() == pytest.approx(0.5 * expected.item(), abs=1e-6)
    pooled = AllDiscriminationLoss()(TokensAndMasks(tokens, masks), TokensAndMasks(targets, masks))
    assert pooled.item() != pytest.approx(expected.item(), abs=1e-3)


def test_configs_build_their_losses_and_reject_bad_values():
    built = AllDiscriminationLossConfig(tau=0.2, pred2unit=True, weight=0.5).build()
    assert (built.tau, built.pred2unit, built.weight) == (0.2, True, 0.5)
    assert type(ModalityAllDiscriminationLossConfig().build()) is ModalityAllDiscriminationLoss
    with pytest.raises(ValueError, match="tau must be a number > 0"):
        AllDiscriminationLossConfig(tau=0)
    with pytest.raises(ValueError, match="pred2unit must be True or False"):
        AllDiscriminationLossConfig(pred2unit="yes")
