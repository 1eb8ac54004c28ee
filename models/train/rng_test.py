"""Tests for seeding and for capturing/restoring the random generators."""

import pickle
import random

import numpy as np
import torch

from models.train import rng


def _draw() -> tuple:
    return (random.random(), float(np.random.rand()), torch.rand(3).tolist())


def test_the_same_seed_gives_the_same_draws_and_another_seed_does_not() -> None:
    rng.seed_everything(7)
    first = _draw()
    rng.seed_everything(7)
    assert _draw() == first
    rng.seed_everything(8)
    assert _draw() != first


def test_restored_state_replays_the_draws_after_the_capture() -> None:
    rng.seed_everything(3)
    _draw()
    state = pickle.loads(pickle.dumps(rng.capture_rng_state()))  # survives a checkpoint
    expected = [_draw() for _ in range(3)]
    rng.seed_everything(99)
    rng.restore_rng_state(state)
    assert [_draw() for _ in range(3)] == expected


def test_code_inside_isolated_does_not_move_the_generators() -> None:
    rng.seed_everything(5)
    expected = _draw()
    rng.seed_everything(5)
    with rng.isolated():
        _draw()
        torch.randn(100)
    assert _draw() == expected
