"""The callbacks every training run has, as configs by name (`TrainerConfig.callbacks`).

The names are how a run's config and the command line address them
(`--trainer.callbacks.checkpointer.interval=500`, `--trainer.callbacks.wandb.mode=offline`),
and their order is the registration order within a phase (callback.Phase): metrics.jsonl
is written before the progress line and W&B. A recipe adds its own (the evaluator) next to
these, or replaces one by name:

    callbacks = {**default_callbacks(), "checkpointer": CheckpointerConfig(interval=500)}
"""

from __future__ import annotations

from typing import Any

from models.train.callbacks.checkpointer import CheckpointerConfig
from models.train.callbacks.config_saver import ConfigSaverConfig
from models.train.callbacks.loss_plot import LossPlotConfig
from models.train.callbacks.metrics_logger import MetricsLoggerConfig
from models.train.callbacks.progress import ProgressConfig
from models.train.callbacks.wandb_logger import WandbConfig


def default_callbacks() -> dict[str, Any]:
    """Fresh configs of the standard callbacks, by name, in registration order."""
    return {
        "checkpointer": CheckpointerConfig(),
        "config_saver": ConfigSaverConfig(),
        "metrics_logger": MetricsLoggerConfig(),
        "progress": ProgressConfig(),
        "wandb": WandbConfig(),
        "loss_plot": LossPlotConfig(),
    }
