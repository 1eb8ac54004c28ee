"""Appends one JSON object per logged step to the run's metrics.jsonl.

Each line is `{"step": N, "<metric>": value, ...}`, written by rank 0 every
`log_interval` steps and at the last step. Lines are flushed at once and fsynced at each
checkpoint, so every step a checkpoint covers is on disk.

After a crash the file can hold lines for steps past the checkpoint the run resumes
from (and a torn last line). Before its first write, the logger rewrites the file
without them, so the resumed run's lines replace them and the file reads as one
uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import IO

from models.config.configurable import Configurable
from models.train.callbacks.callback import Callback, Metrics, Phase


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl file, skipping a torn (unparsable) line."""
    records = []
    if not Path(path).exists():
        return records
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


@dataclasses.dataclass(kw_only=True)
class MetricsLoggerConfig(Configurable["MetricsLoggerCallback"]):
    """Attributes:
    enabled: False: the trainer does not build it (no metrics.jsonl, so no loss plot).
    """

    enabled: bool = True

    def build(self) -> MetricsLoggerCallback:
        return MetricsLoggerCallback()


class MetricsLoggerCallback(Callback):
    """See the module docstring (LOG phase: after the evaluator adds its scores)."""

    phase = Phase.LOG

    def __init__(self) -> None:
        self._handle: IO[str] | None = None

    def _open(self, first_step: int) -> IO[str]:
        path = self.trainer.run_dir.metrics_path
        kept = [r for r in read_metrics(path) if int(r.get("step", 0)) < first_step]
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "w") as handle:
            handle.writelines(json.dumps(record) + "\n" for record in kept)
        os.replace(tmp, path)
        return open(path, "a")

    def post_step(self, step: int, metrics: Metrics) -> None:
        if not self.trainer.is_main:
            return
        if self._handle is None:
            self._handle = self._open(first_step=step)
        if not self.trainer.is_log_step(step):
            return
        record = {"step": step, **{k: v for k, v in metrics.items() if k != "step"}}
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()

    def on_checkpoint(self, step: int, path: Path) -> None:
        if self._handle is not None:
            os.fsync(self._handle.fileno())

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def post_train(self) -> None:
        self._close()

    def on_error(self, error: BaseException) -> None:
        self._close()
