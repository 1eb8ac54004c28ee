"""Periodic atomic checkpoints and their retention; the trainer resumes from them.

Cadence: a checkpoint every `interval` steps (kept: the newest `keep_last`) and a
permanent one every `permanent_interval` steps (never pruned); the reference recipe uses
250 and 5000. A final checkpoint is written when training ends normally, unless the
newest one already holds the last step (a resumed run that had nothing left to train).

A train module with a model and an optimizer is checkpointed sharded: every rank writes its
shard of their state (models/train/checkpoint.py `save_sharded`), so this callback's save is
collective. This callback only saves. Resuming is a step of `Trainer.fit` (models/train/trainer.py):
it loads the newest checkpoint that loads before any callback's `pre_train`.

It runs in the PERSIST phase, after the loggers: in `post_step` a step's metrics are on
disk before a checkpoint that a resume would continue after exists. No checkpoint is
written after a step that raised (a non-finite loss stops the run inside the step, before
any `post_step`).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from models.config.configurable import Configurable
from models.train import checkpoint, distributed
from models.train.callbacks.callback import Callback, Metrics, Phase


@dataclasses.dataclass(kw_only=True)
class CheckpointerConfig(Configurable["CheckpointerCallback"]):
    """Attributes:
    interval: steps between checkpoints (>= 1).
    keep_last: how many of the newest non-permanent checkpoints to keep (>= 1).
    permanent_interval: steps between checkpoints that are never deleted; None: none.
    save_final: write a checkpoint after the last step.
    enabled: False: the trainer does not build it (no checkpoint is written).
    """

    interval: int = 250
    keep_last: int = 1
    permanent_interval: int | None = 5000
    save_final: bool = True
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.interval < 1:
            raise ValueError(f"CheckpointerConfig.interval must be >= 1, got {self.interval}")
        if self.keep_last < 1:
            raise ValueError(f"CheckpointerConfig.keep_last must be >= 1, got {self.keep_last}")
        if self.permanent_interval is not None and self.permanent_interval < 1:
            raise ValueError(
                "CheckpointerConfig.permanent_interval must be >= 1 or None, got "
                f"{self.permanent_interval}"
            )

    def build(self) -> CheckpointerCallback:
        return CheckpointerCallback(self)


class CheckpointerCallback(Callback):
    """See the module docstring."""

    phase = Phase.PERSIST

    def __init__(self, config: CheckpointerConfig) -> None:
        self.config = config
        self.last_saved_step: int | None = None

    @property
    def directory(self) -> Path:
        return self.trainer.run_dir.checkpoints_dir

    def pre_train(self) -> None:
        # The checkpoint the trainer resumed from holds the current step already.
        self.last_saved_step = self.trainer.step if self.trainer.resumed_from is not None else None

    def _due(self, step: int) -> bool:
        permanent = self.config.permanent_interval
        return step % self.config.interval == 0 or bool(permanent and step % permanent == 0)

    def post_step(self, step: int, metrics: Metrics) -> None:
        if self._due(step):
            self.save(step)

    def post_train(self) -> None:
        if self.config.save_final and self.last_saved_step != self.trainer.step:
            self.save(self.trainer.step)

    def save(self, step: int) -> Path:
        """Checkpoint the trainer's current state as `step_<step>` (collective).

        A trainer whose parts include a `checkpoint.ShardedState` (a train module with a
        model and an optimizer) has every rank write its shard (`checkpoint.save_sharded`);
        otherwise rank 0 writes the whole parts (`checkpoint.save`).
        """
        parts = dict(self.trainer.checkpoint_parts())
        sharded = parts.pop(checkpoint.SHARDED_DIR, None)
        path = self.directory / checkpoint.step_dir_name(step)
        meta = {"world_size": self.trainer.env.world_size, "time": time.time()}
        trainer_state = parts.get("trainer")
        if isinstance(trainer_state, dict) and "parallelism" in trainer_state:
            # Also in meta.json: how the writing job was spread, readable without unpickling.
            meta["parallelism"] = trainer_state["parallelism"]
        if sharded is not None:
            path = checkpoint.save_sharded(self.directory, step, sharded, parts, meta)
        elif self.trainer.is_main:
            path = checkpoint.save(self.directory, step, parts, meta)
        if self.trainer.is_main:
            checkpoint.prune(
                self.directory,
                self.config.keep_last,
                self.config.permanent_interval,
                up_to_step=step,
            )
        distributed.barrier()  # nobody runs ahead of a checkpoint that may be read back
        self.last_saved_step = step
        self.trainer.notify_checkpoint(step, path)
        return path
