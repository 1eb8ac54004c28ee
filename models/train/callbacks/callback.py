"""The callback interface: everything around the training loop that is not the step.

Hooks, in the order the trainer calls them:
    pre_train()                      once, before the first step (resume happens here)
    pre_step(step)                   before step `step` (1-based) runs
    post_step(step, metrics)         after step `step` completed; `metrics` are its numbers
    on_checkpoint(step, path)        after a checkpoint of step `step` was written
    post_train()                     once, after the last step, only if training succeeded
    on_error(error)                  instead of post_train, when the loop raised

Callbacks run in descending `priority` (ties keep registration order), so state that
others depend on is set up first: the checkpointer (resume) runs before the metrics
writer, which truncates records past the resumed step.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.train.trainer import Trainer

Metrics = dict[str, float]
"""One step's numbers by name (loss, loss parts, grad norm, lr, throughput, ...)."""


class Callback:
    """Base class: every hook is a no-op; subclasses override what they need."""

    priority: int = 0
    """Higher runs first."""

    trainer: Trainer

    def attach(self, trainer: Trainer) -> None:
        """Called by the trainer when the callback is registered."""
        self.trainer = trainer

    def pre_train(self) -> None:
        pass

    def pre_step(self, step: int) -> None:
        pass

    def post_step(self, step: int, metrics: Metrics) -> None:
        pass

    def on_checkpoint(self, step: int, path: Path) -> None:
        pass

    def post_train(self) -> None:
        pass

    def on_error(self, error: BaseException) -> None:
        pass


def sort_by_priority(callbacks: list[Callback]) -> list[Callback]:
    """Descending priority, stable for equal priorities."""
    return sorted(callbacks, key=lambda callback: -callback.priority)
