"""Draws the loss curve (total and parts) from metrics.jsonl into plots/loss.png.

Reads the file rather than remembering the steps, so a resumed run plots the whole run.
Uses matplotlib's Agg canvas directly (no pyplot), so it neither needs a display nor
changes the process-wide backend.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from models.train.callbacks.callback import Callback
from models.train.callbacks.metrics_logger import read_metrics

LOSS_KEYS = ("loss", "patch_disc", "infonce")


def plot_losses(metrics_path: Path, out_path: Path, title: str = "") -> Path | None:
    """Write the curves of `LOSS_KEYS` found in the file; None when there is nothing."""
    records = read_metrics(metrics_path)
    figure = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    drawn = 0
    for key in LOSS_KEYS:
        points = [(r["step"], r[key]) for r in records if key in r]
        if points:
            steps, values = zip(*points, strict=True)
            axes.plot(steps, values, label=key, linewidth=1.2)
            drawn += 1
    if not drawn:
        return None
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_path)
    return out_path


class LossPlotCallback(Callback):
    priority = 10

    def post_train(self) -> None:
        if self.trainer.is_main:
            run_dir = self.trainer.run_dir
            plot_losses(run_dir.metrics_path, run_dir.plots_dir / "loss.png", run_dir.path.name)
