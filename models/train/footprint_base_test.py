"""footprint at base width: the estimate against a measured CPU step of the ~180M-parameter
model (its own target: about 15 s of the 2 shared cores)."""

from __future__ import annotations

from models.train.footprint_measure import measure_and_estimate


def test_base_step_memory_is_within_20_percent_of_the_estimate() -> None:
    # One sample, 4 x 4 patches of 4 px, 2 timesteps: 288 positions; the optimizer step,
    # not the activations, sets the peak at this width.
    measured, estimate = measure_and_estimate(
        "base", batch=1, image_size=16, patch_size=4, timesteps=2
    )
    assert measured.worst_error(estimate) <= 0.20, measured.errors(estimate)
