"""Tests for the deterministic AdamW linear probe (classification and per-patch)."""

import pytest
import torch

from models.eval import linear_probe
from models.eval.metrics import IGNORE_LABEL

FAST = linear_probe.LinearProbeConfig(epochs=20, batch_size=8, lr=0.05)


def _separable(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=generator)
    directions = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 4.0, 0.0, 0.0], [0.0, 0.0, 4.0, 0.0]])
    return directions[labels] + torch.randn(n, 4, generator=generator), labels


def test_the_probe_separates_linearly_separable_classes() -> None:
    train_x, train_y = _separable(60, 0)
    test_x, test_y = _separable(30, 1)
    probe = linear_probe.train_linear_probe(train_x, train_y, 3, FAST)
    assert (probe.predict(test_x) == test_y).float().mean() > 0.9


def test_training_twice_gives_the_same_probe() -> None:
    x, y = _separable(40, 2)
    first = linear_probe.train_linear_probe(x, y, 3, FAST)
    second = linear_probe.train_linear_probe(x, y, 3, FAST)
    assert torch.equal(first.linear.weight, second.linear.weight)
    assert torch.equal(first.logits(x), second.logits(x))


def test_per_patch_labels_train_a_segmentation_probe_and_ignored_patches_do_not_count() -> None:
    x, y = _separable(64, 3)
    features, labels = x.reshape(4, 4, 4, 4), y.reshape(4, 4, 4)
    noisy = labels.clone()
    noisy[:, 0, 0] = IGNORE_LABEL  # 4 ignored patches: their features must not matter
    shifted = features.clone()
    shifted[:, 0, 0] = 1000.0
    config = linear_probe.LinearProbeConfig(epochs=10, batch_size=2, lr=0.05, standardize=False)
    probe = linear_probe.train_linear_probe(features, noisy, 3, config)
    probe_shifted = linear_probe.train_linear_probe(shifted, noisy, 3, config)
    assert torch.equal(probe.linear.weight, probe_shifted.linear.weight)
    assert probe.predict(features).shape == (4, 4, 4)


def test_the_schedule_warms_up_then_decays_to_min_lr() -> None:
    config = linear_probe.LinearProbeConfig(lr=1.0, min_lr=0.0, epochs=10, warmup_fraction=0.1)
    assert linear_probe.learning_rate(config, 0.5) == pytest.approx(0.5)
    assert linear_probe.learning_rate(config, 1.0) == pytest.approx(1.0)
    assert linear_probe.learning_rate(config, 10.0) == pytest.approx(0.0, abs=1e-12)


def test_mismatched_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="one label per row"):
        linear_probe.train_linear_probe(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long), 2)


def test_a_probe_trains_even_when_the_caller_disabled_gradients() -> None:
    x, y = _separable(20, 4)
    with torch.no_grad():
        probe = linear_probe.train_linear_probe(x, y, 3, FAST)
    assert probe.linear.weight.abs().sum() > 0
