"""Weights & Biases logging (rank 0), offline unless an API key is available.

Mode "auto" resolves to: `$WANDB_MODE` when set, else "online" when `$WANDB_API_KEY` is
set, else "offline". Offline runs write into the run folder's wandb/ and can be uploaded
later with `wandb sync runs/<project>/<run>/wandb/offline-run-*`.

The W&B run id is stored in wandb/run_id, so a resumed training run continues the same
W&B run instead of starting a new one.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Mapping
from typing import Any

from models.train.callbacks.callback import Callback, Metrics
from models.train.callbacks.config_saver import config_to_dict

WANDB_MODES = ("auto", "online", "offline", "disabled")


def resolve_mode(mode: str, environ: Mapping[str, str] | None = None) -> str:
    """The concrete W&B mode for `mode` ("auto" looks at the environment)."""
    environ = os.environ if environ is None else environ
    if mode != "auto":
        return mode
    if environ.get("WANDB_MODE"):
        return environ["WANDB_MODE"]
    return "online" if environ.get("WANDB_API_KEY") else "offline"


@dataclasses.dataclass
class WandbConfig:
    """Attributes:
    enabled: log to W&B at all.
    mode: one of WANDB_MODES; "auto" = offline unless WANDB_API_KEY is set.
    project: W&B project; None: the run folder's project.
    name: W&B run name; None: the run folder's name.
    entity: W&B team or user; None: the key's default.
    tags: labels shown in the W&B UI.
    """

    enabled: bool = True
    mode: str = "auto"
    project: str | None = None
    name: str | None = None
    entity: str | None = None
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in WANDB_MODES:
            raise ValueError(f"WandbConfig.mode must be one of {WANDB_MODES}, got {self.mode!r}")
        self.tags = tuple(self.tags)


class WandbCallback(Callback):
    priority = 30

    def __init__(self, config: WandbConfig, project: str, name: str, run_config: Any) -> None:
        self.config = config
        self.project = config.project or project
        self.name = config.name or name
        self.run_config = run_config
        self.run: Any = None

    def _run_id(self) -> str:
        path = self.trainer.run_dir.wandb_dir / "run_id"
        if path.exists():
            return path.read_text().strip()
        run_id = uuid.uuid4().hex[:12]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(run_id + "\n")
        return run_id

    def pre_train(self) -> None:
        if not self.trainer.is_main:
            return
        import wandb  # heavy import: only when W&B is actually used

        self.run = wandb.init(
            project=self.project,
            name=self.name,
            entity=self.config.entity,
            tags=list(self.config.tags),
            id=self._run_id(),
            resume="allow",
            mode=resolve_mode(self.config.mode),
            dir=str(self.trainer.run_dir.path),
            config=config_to_dict(self.run_config),
        )

    def post_step(self, step: int, metrics: Metrics) -> None:
        if self.run is not None and self.trainer.is_log_step(step):
            self.run.log({f"train/{k}": v for k, v in metrics.items() if k != "step"}, step=step)

    def _finish(self, exit_code: int) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None

    def post_train(self) -> None:
        self._finish(0)

    def on_error(self, error: BaseException) -> None:
        self._finish(1)
