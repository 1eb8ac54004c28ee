"""Tests for the loss-curve PNG drawn from metrics.jsonl."""

import json
from pathlib import Path

from models.train.callbacks import loss_plot


def test_the_loss_curve_is_written_as_a_png(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(
        "".join(
            json.dumps({"step": s, "loss": 5.0 / s, "patch_disc": 4.0 / s, "infonce": 0.1}) + "\n"
            for s in range(1, 11)
        )
    )
    out = loss_plot.plot_losses(metrics, tmp_path / "plots" / "loss.png", "run")
    assert out is not None
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nothing_is_drawn_without_loss_records(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(json.dumps({"step": 1, "lr": 0.1}) + "\n")
    assert loss_plot.plot_losses(metrics, tmp_path / "loss.png") is None
    assert not (tmp_path / "loss.png").exists()


def test_the_trailing_mean_averages_up_to_a_window_of_previous_values() -> None:
    assert loss_plot.trailing_mean([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert loss_plot.trailing_mean([2.0, 4.0], 5) == [2.0, 3.0]


def test_the_window_is_a_tenth_of_the_logged_values_but_at_least_five() -> None:
    assert loss_plot.smoothing_window(20) == 5
    assert loss_plot.smoothing_window(300) == 30
