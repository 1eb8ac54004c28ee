"""InfoNCE between two views: closed-form values, symmetry, gradients and config."""

import math

import pytest
import torch
import torch.nn.functional as F

from models.losses.info_nce import InfoNCELoss, InfoNCELossConfig


def test_identical_orthonormal_views_give_the_closed_form_value():
    batch = 4
    views = torch.eye(batch, 8)[:, torch.randperm(8, generator=torch.Generator().manual_seed(0))]
    loss = InfoNCELoss(tau=0.1)(views * 3.0, views)  # the norm does not matter
    # Diagonal logit 1 / tau = 10, others 0.
    expected = math.log(1 + (batch - 1) * math.exp(-10))  # 1.4e-4, resolved to ~1e-6 in fp32
    assert loss.item() == pytest.approx(expected, abs=2e-6)


def test_views_that_cannot_be_told_apart_give_log_batch():
    same = torch.ones(5, 3)
    assert InfoNCELoss()(same, same).item() == pytest.approx(math.log(5), abs=1e-6)


def test_the_loss_is_symmetric_when_the_similarity_matrix_is():
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(6, 8, generator=generator)
    loss = InfoNCELoss()
    assert loss(a, a.clone()).item() == pytest.approx(loss(a.clone(), a).item(), abs=1e-7)
    b = torch.randn(6, 8, generator=generator)
    assert loss(a, b).item() != pytest.approx(loss(b, a).item(), abs=1e-4)


def test_value_matches_an_explicit_log_softmax_and_scales_with_weight():
    generator = torch.Generator().manual_seed(2)
    a, b = torch.randn(2, 5, 8, generator=generator).double()
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / 0.1
    expected = -(logits.diag() - torch.logsumexp(logits, dim=1)).mean()
    assert InfoNCELoss()(a, b).item() == pytest.approx(expected.item(), abs=1e-9)
    weighted = InfoNCELossConfig(weight=0.05).build()(a.float(), b.float())
    assert weighted.item() == pytest.approx(0.05 * expected.item(), rel=1e-5)


def test_gradients_reach_both_views_in_fp32():
    generator = torch.Generator().manual_seed(3)
    a, b = torch.randn(2, 4, 8, generator=generator).to(torch.bfloat16)
    a.requires_grad_()
    b.requires_grad_()
    loss = InfoNCELoss()(a, b)
    assert loss.dtype == torch.float32
    loss.backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_shapes_and_config_are_validated():
    with pytest.raises(ValueError, match=r"two \[B, D\] tensors"):
        InfoNCELoss()(torch.zeros(4, 8), torch.zeros(3, 8))
    with pytest.raises(ValueError, match="InfoNCELossConfig.tau must be a number > 0"):
        InfoNCELossConfig(tau=-0.1)
