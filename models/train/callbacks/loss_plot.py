"""Draws the loss curve (total and parts) from metrics.jsonl into plots/loss.png.

Each logged value is drawn faintly and its trailing mean boldly: the recipe draws a new patch
size and window every step, and the loss scales with the number of tokens, so single values
of a nano run jump between ~1 and ~4.5 while the trend is what a reader wants. The window is
10% of the logged values, at least 5 (as //tools:compare smooths).

Reads the file rather than remembering the steps, so a resumed run plots the whole run.
Uses matplotlib's Agg canvas directly (no pyplot), so it neither needs a display nor
changes the process-wide backend.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from models.config.configurable import Configurable
from models.train.callbacks.callback import Callback, Phase
from models.train.callbacks.metrics_logger import read_metrics

LOSS_KEYS = ("loss", "patch_disc", "infonce")
MIN_WINDOW = 5


def smoothing_window(count: int) -> int:
    """Trailing-mean window for `count` logged values: 10% of them, at least MIN_WINDOW."""
    return max(MIN_WINDOW, round(0.1 * count))


def trailing_mean(values: list[float], window: int) -> list[float]:
    """Mean of each value and up to `window - 1` before it."""
    out, total = [], 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        out.append(total / min(index + 1, window))
    return out


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
            window = smoothing_window(len(values))
            (line,) = axes.plot(steps, values, linewidth=0.8, alpha=0.3)
            smoothed = trailing_mean(list(values), window)
            axes.plot(
                steps, smoothed, color=line.get_color(), linewidth=1.8, label=f"{key} ({window})"
            )
            drawn += 1
    if not drawn:
        return None
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(f"{title}  (faint: logged; bold: trailing mean over (n) values)".strip())
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_path)
    return out_path


@dataclasses.dataclass(kw_only=True)
class LossPlotConfig(Configurable["LossPlotCallback"]):
    """Attributes:
    enabled: False: the trainer does not build it (no plots/loss.png).
    """

    enabled: bool = True

    def build(self) -> LossPlotCallback:
        return LossPlotCallback()


class LossPlotCallback(Callback):
    """Rank 0 draws plots/loss.png after the last step (OBSERVE: it reads metrics.jsonl)."""

    phase = Phase.OBSERVE

    def post_train(self) -> None:
        if self.trainer.is_main:
            run_dir = self.trainer.run_dir
            plot_losses(run_dir.metrics_path, run_dir.plots_dir / "loss.png", run_dir.path.name)
