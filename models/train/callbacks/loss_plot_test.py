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
