"""Tests for seeding and for capturing/restoring the random generators."""

import io
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


def _through_a_checkpoint(state: dict) -> dict:
    """`state` saved and loaded back as a checkpoint part is (no pickled classes)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_restored_state_replays_the_draws_after_the_capture() -> None:
    rng.seed_everything(3)
    _draw()
    np.random.randn()  # leaves a cached Gaussian in NumPy's state: it must survive too
    state = _through_a_checkpoint(rng.capture_rng_state())
    expected = [_draw() + (float(np.random.randn()),) for _ in range(3)]
    rng.seed_everything(99)
    rng.restore_rng_state(state)
    assert [_draw() + (float(np.random.randn()),) for _ in range(3)] == expected


def test_numpy_state_is_kept_losslessly_as_a_tensor() -> None:
    np.random.seed(2**32 - 1)  # key words near the top of uint32
    np.random.randn()
    before = np.random.get_state()
    rng.restore_rng_state(_through_a_checkpoint(rng.capture_rng_state()))
    after = np.random.get_state()
    assert before[0] == after[0] and before[2:] == after[2:]
    assert np.array_equal(before[1], after[1]) and after[1].dtype == np.uint32


def test_a_state_captured_as_numpy_tuple_still_restores() -> None:
    # Checkpoints written before the state was kept plain hold NumPy's own tuple.
    rng.seed_everything(4)
    state = {**rng.capture_rng_state(), "numpy": np.random.get_state()}
    expected = float(np.random.rand())
    rng.seed_everything(5)
    rng.restore_rng_state(state)
    assert float(np.random.rand()) == expected


def test_code_inside_isolated_does_not_move_the_generators() -> None:
    rng.seed_everything(5)
    expected = _draw()
    rng.seed_everything(5)
    with rng.isolated():
        _draw()
        torch.randn(100)
    assert _draw() == expected
