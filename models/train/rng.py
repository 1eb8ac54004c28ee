"""Seeding and capturing every random number generator a training step touches.

A resumed run reproduces an uninterrupted one exactly only if, after loading the
checkpoint, each generator is where it was when the checkpoint was taken: Python's
`random`, NumPy's global generator, torch's CPU generator (drop path, dropout) and, on
GPU, every CUDA generator.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

DEFAULT_MODEL_SEED = 12536
"""The model initialisation seed of the v1 recipe (the reference's launch scripts pass
12536): the trainer's default, so every layer above it seeds the same model unless told."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, torch CPU and all CUDA generators from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _numpy_state_to_plain(state: tuple) -> dict[str, Any]:
    """NumPy's legacy state tuple with its key array as a tensor: the array would need
    NumPy's classes to unpickle, which a weights_only load refuses."""
    algorithm, key, position, has_gauss, cached_gaussian = state
    return {
        "algorithm": str(algorithm),
        # int64 holds every uint32 exactly; torch's uint32 tensors have few operations.
        "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
        "position": int(position),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }


def _numpy_state_from_plain(state: dict[str, Any] | tuple) -> tuple:
    if isinstance(state, tuple):  # captured before the state was kept plain
        return state
    return (
        state["algorithm"],
        state["key"].numpy().astype(np.uint32),
        state["position"],
        state["has_gauss"],
        state["cached_gaussian"],
    )


def capture_rng_state() -> dict[str, Any]:
    """A snapshot of every generator's state, as tensors and plain Python values only, so
    that a checkpoint holding it loads with `torch.load(weights_only=True)`.

    Python's state is already a tuple of ints (and None or a float); torch's are byte
    tensors; NumPy's key array becomes an int64 tensor.
    """
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _numpy_state_to_plain(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put every generator back where `capture_rng_state` found it."""
    random.setstate(state["python"])
    np.random.set_state(_numpy_state_from_plain(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def isolated() -> Iterator[None]:
    """Whatever runs inside leaves Python's, NumPy's and torch's CPU generators untouched.

    The trainer fetches batches inside it. Creating a torch DataLoader iterator draws a
    seed from torch's generator, and a resumed run creates its iterator at a different
    moment (mid-epoch) than the uninterrupted run did (at the epoch start); isolating the
    data loading keeps the model's random stream (drop path) the same in both.
    """
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    torch_state = torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)
