"""Periodic atomic checkpoints, retention, and automatic resume.

Cadence: a checkpoint every `interval` steps (kept: the newest `keep_last`) and a
permanent one every `permanent_interval` steps (never pruned); the reference recipe uses
250 and 5000. A final checkpoint is written when training ends normally.

Resume: at `pre_train`, leftovers of interrupted writes are deleted and the newest
complete `checkpoints/step_<N>/` is loaded on every rank (rank 0 picks it and tells the
others, so all ranks load the same one). One that does not load (a damaged or planted
file, a garbage meta.json) is skipped with a warning naming it and why, and the next older
one is tried; the run resumes from the newest that loads and says that it fell back. When
checkpoints exist but none loads, the run stops with one error naming them rather than
start over from step 0 on top of them. The skipped ones stay (for inspection) until the
run writes that step again, which replaces them; pruning does not count them.

The checkpointer has the lowest priority: in `post_step` it runs after the loggers, so a
step's metrics are on disk before a checkpoint that would skip past them exists. No
checkpoint is written after a step that raised (a non-finite loss stops the run inside
the step, before any `post_step`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from models.train import checkpoint, distributed
from models.train.callbacks.callback import Callback, Metrics

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class CheckpointerConfig:
    """Attributes:
    interval: steps between checkpoints (>= 1).
    keep_last: how many of the newest non-permanent checkpoints to keep (>= 1).
    permanent_interval: steps between checkpoints that are never deleted; None: none.
    save_final: write a checkpoint after the last step.
    resume: load the newest complete checkpoint of the run folder at start.
    """

    interval: int = 250
    keep_last: int = 1
    permanent_interval: int | None = 5000
    save_final: bool = True
    resume: bool = True

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


class CheckpointerCallback(Callback):
    priority = -100

    def __init__(self, config: CheckpointerConfig) -> None:
        self.config = config
        self.last_saved_step: int | None = None

    @property
    def directory(self) -> Path:
        return self.trainer.run_dir.checkpoints_dir

    def pre_train(self) -> None:
        if not self.config.resume:
            return
        choice: tuple[str | None, str | None] = (None, None)  # (checkpoint, error)
        parts = None
        if self.trainer.is_main:
            for leftover in checkpoint.remove_incomplete(self.directory):
                logger.warning("removed an incomplete checkpoint: %s", leftover)
            parts, choice = self._newest_loadable()
        latest, error = distributed.broadcast_object(choice)
        if error is not None:
            raise RuntimeError(error)  # on every rank: none waits for the others
        if latest is None:
            return
        if parts is None:  # the other ranks; rank 0 loaded it while choosing
            parts = checkpoint.load(Path(latest))
        try:
            self.trainer.load_checkpoint_parts(parts)
        except Exception as error:  # e.g. a model config that does not match the weights
            error.add_note(f"while resuming from {latest}")
            raise
        self.trainer.resumed_from = Path(latest)
        self.last_saved_step = self.trainer.step
        logger.info("resumed from %s (step %d)", latest, self.trainer.step)

    def _newest_loadable(self) -> tuple[dict | None, tuple[str | None, str | None]]:
        """(parts, (path, error)) of the newest checkpoint that loads, trying older ones
        when newer ones fail; the error when there are checkpoints and none loads."""
        failures = []
        for _, path in reversed(checkpoint.list_finished(self.directory)):
            try:
                parts = checkpoint.load(path)
            except checkpoint.UnreadableCheckpointError as error:
                logger.warning(
                    "cannot resume from %s: %s; trying the checkpoint before it", path, error.reason
                )
                failures.append(f"{path.name}: {error.reason}")
                continue
            if failures:
                logger.warning(
                    "resuming from %s, an older checkpoint than the newest, because %d newer "
                    "one(s) did not load (see above); training repeats the steps after it",
                    path,
                    len(failures),
                )
            return parts, (str(path), None)
        if not failures:
            return None, (None, None)
        error = (
            f"no checkpoint in {self.directory} loads, so this run cannot resume:\n  "
            + "\n  ".join(failures)
            + "\nMove these step_<N> folders out of that folder (or delete them) to start the "
            "run over from step 0, or put back a good copy of one to resume from it."
        )
        return None, (None, error)

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
        """Checkpoint the trainer's current state as `step_<step>` (collective)."""
        parts = self.trainer.checkpoint_parts()
        path = self.directory / checkpoint.step_dir_name(step)
        if self.trainer.is_main:
            meta = {"world_size": self.trainer.env.world_size, "time": time.time()}
            path = checkpoint.save(self.directory, step, parts, meta)
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
