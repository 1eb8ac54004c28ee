"""A one-line progress report on stderr: step, loss, samples/s, tokens/s, lr, ETA.

On a terminal the line is redrawn in place (carriage return), at most once every
`min_interval_s` seconds, so a fast nano run does not spend its time printing. Into a
file or pipe (a cluster log) it prints one clean line per logged step instead, because
carriage returns turn a log file into one unreadable line.

Rates are averaged since the previous report, so a redraw every 2 s shows the throughput
of those 2 s rather than of the last (possibly data-starved) step.
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
import time
from collections.abc import Callable
from typing import TextIO

from models.config.configurable import Configurable
from models.train.callbacks.callback import Callback, Metrics, Phase


@dataclasses.dataclass(kw_only=True)
class ProgressConfig(Configurable["ProgressCallback"]):
    """Attributes:
    enabled: print progress at all (rank 0 only).
    min_interval_s: on a terminal, the least time between redraws.
    """

    enabled: bool = True
    min_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if self.min_interval_s < 0:
            raise ValueError(
                f"ProgressConfig.min_interval_s must be >= 0, got {self.min_interval_s}"
            )

    def build(self) -> ProgressCallback:
        return ProgressCallback(self)


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.1f}"


class ProgressCallback(Callback):
    """See the module docstring (LOG phase: the line shows the step's final metrics)."""

    phase = Phase.LOG

    def __init__(
        self,
        config: ProgressConfig,
        stream: TextIO | None = None,
        is_tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.stream = stream if stream is not None else sys.stderr
        self.is_tty = self.stream.isatty() if is_tty is None else is_tty
        self.clock = clock
        self._last_report: float | None = None
        self._pending_samples = 0.0
        self._pending_tokens = 0.0
        self._pending_seconds = 0.0
        self._start: float | None = None
        self._start_step = 0
        self._drawn = False

    def post_step(self, step: int, metrics: Metrics) -> None:
        if not self.trainer.is_main:
            return
        now = self.clock()
        if self._start is None:
            self._start, self._start_step = now - metrics.get("step_time_s", 0.0), step - 1
        self._pending_samples += metrics.get("samples", 0.0)
        self._pending_tokens += metrics.get("tokens", 0.0)
        self._pending_seconds += metrics.get("step_time_s", 0.0)
        last = step == self.trainer.max_steps
        if self.is_tty:
            due = self._last_report is None or now - self._last_report >= self.config.min_interval_s
            if not (due or last):
                return
        elif not self.trainer.is_log_step(step):
            return
        self._report(step, metrics, now)

    def _report(self, step: int, metrics: Metrics, now: float) -> None:
        seconds = max(self._pending_seconds, 1e-9)
        max_steps = self.trainer.max_steps
        done = step - self._start_step
        eta_s = (now - self._start) / max(done, 1) * (max_steps - step)
        parts = [
            f"step {step}/{max_steps} ({100.0 * step / max_steps:.0f}%)",
            f"loss {metrics.get('loss', float('nan')):.4f}",
            f"{_si(self._pending_samples / seconds)} samples/s",
            f"{_si(self._pending_tokens / seconds)} tokens/s",
        ]
        if "lr" in metrics:
            parts.append(f"lr {metrics['lr']:.2e}")
        parts.append(f"eta {datetime.timedelta(seconds=round(eta_s))}")
        line = " | ".join(parts)
        if self.is_tty:
            self.stream.write("\r\033[K" + line)
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._last_report = now
        self._pending_samples = self._pending_tokens = self._pending_seconds = 0.0

    def _finish_line(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def post_train(self) -> None:
        self._finish_line()

    def on_error(self, error: BaseException) -> None:
        self._finish_line()
