"""The callback interface: everything around the training loop that is not the step.

`Trainer.fit` runs, in this order:
    open the run folder (rank 0 creates and locks it)
    open_run()                       once: the folder is locked and nothing has read it yet
    resume                           the trainer loads the newest checkpoint that loads
    pre_train()                      once: `trainer.step` is the step training continues from
    pre_step(step)                   before step `step` (1-based) runs
    post_step(step, metrics)         after step `step` completed; `metrics` are its numbers
    on_checkpoint(step, path)        after a checkpoint of step `step` was written
    post_train()                     once, after the last step, only if training succeeded
    on_error(error)                  instead of the rest, when anything above raised

Every hook calls the callbacks in one order: by `phase` (`Phase`, lowest first), and in
registration order within a phase (the trainer config's `callbacks` in their order, then
the callbacks passed to `TrainerConfig.build`). The phases say what must precede what.

Callbacks see the trainer through `TrainerView`, the few things they read, so callback
modules never import the trainer: the import graph is one way, trainer -> callbacks.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # annotations only: importing the callback interface stays light
    from models.train.distributed import DistributedEnv
    from models.train.run_dir import RunDirectory

Metrics = dict[str, float]
"""One step's numbers by name (loss, loss parts, grad norm, lr, throughput, ...)."""


class Phase(enum.IntEnum):
    """Where a callback runs among the others, in every hook; lower runs first.

    CLAIM    vets the run folder before anything reads or writes it (the run identity:
             a start that would mix two setups must stop before the resume and the
             records touch the folder).
    RECORD   writes the run's records (config.yaml, provenance.json), which describe the
             start; they run after the resume, so `trainer.step` is the resumed step.
    MEASURE  adds numbers to a step's metrics (downstream evaluation), before anything
             writes them, so the scores reach metrics.jsonl and W&B with their step.
    LOG      writes a step's metrics out: metrics.jsonl, the progress line, W&B.
    OBSERVE  reads what the loggers wrote or the final metrics (loss plot, summaries,
             test probes); the default of a callback that names no phase.
    PERSIST  checkpoints, after the loggers: a checkpoint of step N exists only once
             step N's metrics are on disk, so a resume never skips unlogged steps.
    """

    CLAIM = 10
    RECORD = 20
    MEASURE = 30
    LOG = 40
    OBSERVE = 50
    PERSIST = 60


class TrainerView(Protocol):
    """What callbacks read of the trainer (models/train/trainer.py's `Trainer` is one)."""

    run_dir: RunDirectory
    env: DistributedEnv
    step: int
    """Completed optimizer steps (after the resume in pre_train: the resumed step)."""
    max_steps: int
    log_interval: int
    resumed_from: Path | None
    """The checkpoint this start resumed from; None: it started at step 0."""
    run_project: str
    run_name: str
    run_config: Any
    """The whole config of the run, for config.yaml and W&B."""
    train_module: Any

    @property
    def is_main(self) -> bool: ...

    def is_log_step(self, step: int) -> bool: ...

    def checkpoint_parts(self) -> dict[str, Any]: ...

    def notify_checkpoint(self, step: int, path: Path) -> None: ...


class Callback:
    """Base class: every hook is a no-op; subclasses override what they need."""

    phase: Phase = Phase.OBSERVE
    """Where this callback runs among the others (see `Phase`)."""

    trainer: TrainerView

    def attach(self, trainer: TrainerView) -> None:
        """Called by the trainer when the callback is registered."""
        self.trainer = trainer

    def open_run(self) -> None:
        pass

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


def in_phase_order(callbacks: list[Callback]) -> list[Callback]:
    """The order every hook calls `callbacks` in: by phase, registration order within one."""
    for callback in callbacks:
        name = type(callback).__name__
        if hasattr(callback, "priority"):  # a callback written for the old numeric order
            raise TypeError(
                f"{name} sets `priority`, which the trainer no longer reads: set `phase` to a "
                "models.train.callbacks.callback.Phase instead"
            )
        if not isinstance(getattr(callback, "phase", None), Phase):
            raise TypeError(
                f"{name}.phase is {getattr(callback, 'phase', None)!r}: set it to a "
                "models.train.callbacks.callback.Phase"
            )
    return sorted(callbacks, key=lambda callback: callback.phase)
