"""KoLeo: closed-form values, invariances, spreading, the vectors each mode uses, errors."""

import math

import pytest
import torch

from models.losses.koleo import KoLeoLoss, KoLeoLossConfig, koleo, online_encoder_vectors
from models.modalities.samples import MaskValue, TokensAndMasks

ONLINE = int(MaskValue.ONLINE_ENCODER)
DEC = int(MaskValue.DECODER)


def test_four_points_on_a_circle_give_minus_log_root_two():
    square = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    # Every nearest neighbour is 90 degrees away: distance sqrt(2).
    expected = -0.1 * math.log(math.sqrt(2))
    assert KoLeoLoss()(square * 3.0).item() == pytest.approx(expected, abs=1e-6)


def test_the_nearest_neighbour_alone_sets_each_term():
    # Points at 0, 10 and 180 degrees: 0 and 10 are each other's neighbours, 180 picks 10.
    angles = torch.tensor([0.0, 10.0, 180.0]) * math.pi / 180
    points = torch.stack([angles.cos(), angles.sin()], dim=-1)
    near = 2 * math.sin(math.radians(5))
    far = 2 * math.sin(math.radians(85))
    expected = -(2 * math.log(near) + math.log(far)) / 3
    assert koleo(points, eps=1e-8).item() == pytest.approx(expected, abs=1e-5)


def test_the_loss_ignores_each_vectors_length_and_a_rotation():
    generator = torch.Generator().manual_seed(0)
    vectors = torch.randn(6, 5, generator=generator)
    scales = torch.rand(6, 1, generator=generator) + 0.1
    rotation = torch.linalg.qr(torch.randn(5, 5, generator=generator))[0]
    loss = KoLeoLoss()
    assert loss(vectors * scales).item() == pytest.approx(loss(vectors).item(), abs=1e-6)
    assert loss(vectors @ rotation).item() == pytest.approx(loss(vectors).item(), abs=1e-6)


def test_clustered_vectors_cost_more_than_spread_ones_and_gradients_spread_them():
    generator = torch.Generator().manual_seed(1)
    base = torch.randn(1, 8, generator=generator)
    clustered = (base + 0.01 * torch.randn(6, 8, generator=generator)).requires_grad_()
    spread = torch.eye(6, 8)
    loss = KoLeoLoss()(clustered)
    assert loss > KoLeoLoss()(spread)
    loss.backward()
    assert torch.isfinite(clustered.grad).all()
    with torch.no_grad():
        stepped = clustered - 0.01 * clustered.grad / clustered.grad.norm()
    assert KoLeoLoss()(stepped) < loss


def _encoded(seed=0):
    generator = torch.Generator().manual_seed(seed)
    tokens = {
        "sentinel2_l2a": torch.randn(3, 2, 2, 2, 1, 6, generator=generator),
        "srtm": torch.randn(3, 2, 2, 1, 1, 6, generator=generator),
    }
    masks = {
        name: torch.randint(0, 4, t.shape[:-1], generator=generator).to(torch.int8)
        for name, t in tokens.items()
    }
    for mask in masks.values():
        mask.view(3, -1)[:, 0] = ONLINE
    return tokens, masks


def test_instance_mode_uses_the_mean_of_each_samples_visible_tokens():
    tokens, masks = _encoded()
    flat = torch.cat([tokens[n].reshape(3, -1, 6) for n in ("sentinel2_l2a", "srtm")], 1)
    visible = torch.cat([masks[n].reshape(3, -1) for n in ("sentinel2_l2a", "srtm")], 1) == ONLINE
    means = torch.stack([flat[b][visible[b]].mean(0) for b in range(3)])
    loss = KoLeoLoss(weight=1.0)(TokensAndMasks(tokens, masks))
    assert loss.item() == pytest.approx(KoLeoLoss(weight=1.0)(means).item(), abs=1e-6)
    patch_vectors = online_encoder_vectors(TokensAndMasks(tokens, masks), "patch")
    assert torch.equal(patch_vectors, flat[visible])


def test_tokens_the_encoder_did_not_see_do_not_matter():
    tokens, masks = _encoded(1)
    for mode in ("instance", "patch"):
        loss_fn = KoLeoLoss(mode=mode)
        before = loss_fn(TokensAndMasks(tokens, masks))
        changed = {name: t.clone() for name, t in tokens.items()}
        for name in changed:
            changed[name][masks[name] != ONLINE] = 50.0
        assert loss_fn(TokensAndMasks(changed, masks)).item() == pytest.approx(before.item())


def test_bad_inputs_are_rejected_with_the_fix():
    with pytest.raises(ValueError, match="at least 2 vectors"):
        KoLeoLoss()(torch.randn(1, 4))
    tokens, masks = _encoded()
    masks = {name: m.clone() for name, m in masks.items()}
    for mask in masks.values():
        mask[1] = DEC
    with pytest.raises(ValueError, match="ONLINE_ENCODER token in every sample"):
        KoLeoLoss()(TokensAndMasks(tokens, masks))
    with pytest.raises(ValueError, match=r"mode must be one of \['instance', 'patch'\]"):
        KoLeoLossConfig(mode="token")


def test_config_defaults_follow_the_reference():
    built = KoLeoLossConfig().build()
    assert (built.weight, built.mode, built.eps) == (0.1, "instance", 1e-8)
