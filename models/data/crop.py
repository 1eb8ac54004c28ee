"""The token budget and the budgeted crop window (the reference's `subset_sample_default`).

A training instance is cut to `patches_per_side` x `patches_per_side` patches of
`patch_size` pixels and to as many timesteps as fit a token budget. Tokens are counted per
band set, for every training modality whether or not the sample has data for it (the
reference counts the filled-in missing modalities too):
    static tokens        = h * w * (band sets of the static maps)
    tokens per timestep  = h * w * (band sets of the multitemporal modalities)
    T = min(max_timesteps, floor((budget - static tokens) / tokens per timestep))
Non-spatial modalities (lat/lon) are not counted, as in the reference.
Example, the nine v1 modalities with default band sets (S2 3 + S1 1 + Landsat 2 per step,
six maps of 1 each) and budget 2250: h = w = 8 gives 384 static tokens and 384 per step,
so T = floor(1866 / 384) = 4.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping

import numpy as np

from models.modalities import modalities

DEFAULT_TOKEN_BUDGET = 2250
"""Tokens per instance in the OlmoEarth v1 recipe."""


def token_counts(
    specs: Iterable[modalities.ModalitySpec], patches_per_side: int
) -> tuple[int, int]:
    """(static tokens, tokens per timestep) of one instance with h = w = patches_per_side."""
    static, per_step = 0, 0
    patches = patches_per_side**2
    for spec in specs:
        if not spec.is_spatial:
            continue
        if spec.is_multitemporal:
            per_step += patches * spec.num_band_sets
        else:
            static += patches * spec.num_band_sets
    return static, per_step


def max_timesteps_within_budget(
    specs: Iterable[modalities.ModalitySpec],
    patches_per_side: int,
    token_budget: int | None,
    max_timesteps: int,
) -> int:
    """The largest T <= max_timesteps whose instance has at most `token_budget` tokens.

    Raises:
        ValueError: not even one timestep fits (the window is too large for the budget).
    """
    static, per_step = token_counts(specs, patches_per_side)
    if token_budget is None:
        return max_timesteps
    if per_step == 0:
        if static > token_budget:
            raise ValueError(
                f"{patches_per_side}x{patches_per_side} patches need {static} tokens; "
                f"token_budget is {token_budget}"
            )
        return 1
    fit = (token_budget - static) / per_step
    if fit < 1:
        raise ValueError(
            f"{patches_per_side}x{patches_per_side} patches need {static + per_step} tokens "
            f"for one timestep; token_budget is {token_budget}"
        )
    return min(math.floor(fit), max_timesteps)


def valid_start_timesteps(
    present: Mapping[str, np.ndarray], num_timesteps: int, current_length: int
) -> list[int]:
    """Start steps for a window of `num_timesteps` within the first `current_length` steps.

    When the window is shorter than the series, a start is valid if some modality has data
    at that step (so the window never starts on a step where nothing was observed) and the
    window ends within the series. `present[m]` is True where modality m has data.
    """
    if current_length <= num_timesteps:
        return [0]
    if not present:
        return list(range(current_length - num_timesteps + 1))
    starts: set[int] = set()
    for mask in present.values():
        steps = np.flatnonzero(mask)
        starts.update(int(t) for t in steps[steps + num_timesteps <= current_length])
    if not starts:
        raise ValueError(
            f"no start step for a {num_timesteps}-step window in {current_length} steps "
            "has data in any modality"
        )
    return sorted(starts)


@dataclasses.dataclass(frozen=True)
class CropWindow:
    """Pixels [top, top + size) x [left, left + size), steps [start_t, start_t + num_t)."""

    top: int
    left: int
    size: int
    start_t: int
    num_t: int


def sample_crop_window(
    rng: np.random.Generator,
    height: int,
    width: int,
    window_px: int,
    num_timesteps: int,
    valid_starts: list[int],
) -> CropWindow:
    """Draws the start step first, then the top-left pixel, uniformly (reference order)."""
    if window_px > height or window_px > width:
        raise ValueError(f"a {window_px}px window does not fit a {height}x{width} sample")
    start_t = int(valid_starts[int(rng.integers(len(valid_starts)))])
    top = int(rng.integers(height - window_px + 1))
    left = int(rng.integers(width - window_px + 1))
    return CropWindow(top, left, window_px, start_t, num_timesteps)
