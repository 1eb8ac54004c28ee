"""Tests for the AdamW config and the warmup + cosine learning-rate schedule."""

import copy
import math

import pytest
import torch
from torch import nn

from models.train import optim


def _tiny_module() -> nn.Module:
    module = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    module[0].weight.requires_grad_(False)  # stands in for a frozen target
    return module


def _lrs(scheduler: optim.CosineWithWarmup, optimizer: torch.optim.Optimizer, n: int) -> list:
    lrs = []
    for _ in range(n):
        lrs.append(scheduler.lr)
        optimizer.step()
        scheduler.step()
    return lrs


def test_adamw_skips_frozen_parameters_and_uses_the_recipe_values() -> None:
    module = _tiny_module()
    optimizer = optim.AdamWConfig().build(module)
    params = optimizer.param_groups[0]["params"]
    assert len(params) == 3  # 4 tensors, one frozen
    assert all(p is not module[0].weight for p in params)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["betas"], group["eps"]) == (
        1e-4,
        0.02,
        (0.9, 0.999),
        1e-8,
    )


def test_the_fused_and_foreach_kernels_take_the_same_steps() -> None:
    torch.manual_seed(0)
    start = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 8))
    inputs, targets = torch.randn(64, 16), torch.randn(64, 8)
    trained = {}
    for fused in (True, False):
        module = copy.deepcopy(start)
        optimizer = optim.AdamWConfig(lr=1e-2, fused=fused).build(module)
        assert optimizer.defaults["fused"] is (True if fused else None)
        for _ in range(20):
            optimizer.zero_grad()
            nn.functional.mse_loss(module(inputs), targets).backward()
            optimizer.step()
        trained[fused] = torch.cat([p.detach().flatten() for p in module.parameters()])
    moved = (trained[True] - torch.cat([p.detach().flatten() for p in start.parameters()])).abs()
    assert moved.max() > 0.05  # the steps did something
    torch.testing.assert_close(trained[True], trained[False], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"lr": 0.0}, "lr"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"betas": (0.9, 1.0)}, "betas"),
        ({"eps": 0.0}, "eps"),
    ],
)
def test_adamw_config_rejects_invalid_values_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"AdamWConfig.{field}"):
        optim.AdamWConfig(**kwargs)


def test_adamw_config_accepts_betas_as_a_list_from_yaml() -> None:
    assert optim.AdamWConfig(betas=[0.8, 0.9]) == optim.AdamWConfig(betas=(0.8, 0.9))


def test_schedule_warms_up_linearly_then_decays_by_cosine_to_alpha_f() -> None:
    module = _tiny_module()
    optimizer = optim.AdamWConfig(lr=1.0).build(module)
    scheduler = optim.CosineWithWarmupConfig(warmup_steps=4, alpha_f=0.1).build(
        optimizer, max_steps=12
    )
    lrs = _lrs(scheduler, optimizer, 14)
    # Updates 1..3 ramp up: k / 4; update 4 starts the cosine at the peak.
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    # Halfway through the cosine (update 8 of 4..12) the rate is midway to alpha_f.
    assert lrs[7] == pytest.approx(0.1 + 0.9 * 0.5)
    assert all(a > b for a, b in zip(lrs[3:11], lrs[4:12], strict=True))
    # The last update and anything after it run at alpha_f x lr.
    assert lrs[11:] == pytest.approx([0.1, 0.1, 0.1])


def test_schedule_factor_matches_the_closed_form_inside_the_cosine() -> None:
    config = optim.CosineWithWarmupConfig(warmup_steps=10, alpha_f=0.2)
    step, max_steps = 37, 110
    expected = 0.2 + 0.8 * (1 + math.cos(math.pi * 27 / 100)) / 2
    assert config.factor(step, max_steps) == pytest.approx(expected)


def test_restored_schedule_continues_with_the_same_learning_rates() -> None:
    config = optim.CosineWithWarmupConfig(warmup_steps=3)
    optimizer = optim.AdamWConfig(lr=2e-3).build(_tiny_module())
    scheduler = config.build(optimizer, max_steps=20)
    first = _lrs(scheduler, optimizer, 7)
    state = scheduler.state_dict()
    rest = _lrs(scheduler, optimizer, 5)

    other_optimizer = optim.AdamWConfig(lr=2e-3).build(_tiny_module())
    restored = config.build(other_optimizer, max_steps=20)
    restored.load_state_dict(state)
    assert _lrs(restored, other_optimizer, 5) == rest
    assert first[0] == pytest.approx(2e-3 / 3)


@pytest.mark.parametrize(
    "kwargs, field", [({"warmup_steps": -1}, "warmup_steps"), ({"alpha_f": 1.5}, "alpha_f")]
)
def test_schedule_config_rejects_invalid_values_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"CosineWithWarmupConfig.{field}"):
        optim.CosineWithWarmupConfig(**kwargs)
