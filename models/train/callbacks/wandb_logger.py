"""Weights & Biases logging (rank 0), offline unless an API key is available.

Mode "auto" resolves to: `$WANDB_MODE` when set, else "online" when `$WANDB_API_KEY` is
set, else "offline". Offline runs write into the run folder's wandb/ and can be uploaded
later with `wandb sync runs/<project>/<run>/wandb/offline-run-*`.

The W&B run id is stored in wandb/run_id, so a resumed training run continues the same
W&B run instead of starting a new one.

Replayed steps. A run killed after its last checkpoint has logged steps that its resumed
attempt trains (and logs) again; metrics.jsonl keeps the resumed values (see
metrics_logger), and so must W&B, whose history otherwise keeps the first value of a step
and drops later ones. `WandbConfig.replayed_steps` picks how:

- "rewind" (default): steps are logged as they finish; a resumed attempt rewinds the W&B
  run to the step it resumed from (`wandb.init(resume_from="<id>?_step=<N>")`), which
  drops the killed attempt's later steps. Offline, the rewind is recorded in the new
  segment's log (its branch point) and `wandb sync` sends it. W&B's server must offer run
  rewind (a preview feature of W&B cloud); when it refuses, the run resumes without it,
  with a warning, and W&B keeps the killed attempt's values of those steps.
- "hold": a step is sent to W&B only once a checkpoint covers it (or training ends), so
  W&B never holds a step that a resume replays. Works with any server; W&B lags up to one
  checkpoint interval behind, and a run that dies leaves its uncovered steps to
  metrics.jsonl only.

The W&B run starts at the first step (rank 0), when the step a resume continues from is
known. Its project and name default to the run folder's (`trainer.run_project`,
`trainer.run_name`), its config is the run's (`trainer.run_config`).

Runs of a study. A study's runs share a W&B `group` (the study), have a `job_type` (the
variant) and `notes` (the hypothesis), so W&B groups, filters and describes them as the
study does. Every run's W&B config also holds a `provenance` block that says what produced
the numbers: `commit` and `image` of this start, `seed` (the trainer's), `study`,
`hypothesis` and `variant` (group, notes and job_type again, for config-based filters).
The commit and image come from the run folder's record of this start, `provenance.json`'s
last `starts` entry, which the experiments framework writes (with TERRA_LAB_COMMIT inside a
job, else the workspace's git HEAD; TERRA_LAB_IMAGE) in `pre_train`, a RECORD-phase hook
that runs before W&B starts; this module runs no git. Without such a record of this
process (a trainer used outside the framework) both are None. A resumed start sends its own
block, so the W&B config shows the commit and image the newest attempt ran.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from models.config import serialization
from models.config.configurable import Configurable
from models.train.callbacks.callback import Callback, Metrics, Phase

logger = logging.getLogger(__name__)

WANDB_MODES = ("auto", "online", "offline", "disabled")
REPLAYED_STEPS = ("rewind", "hold")
PROVENANCE_FILE = "provenance.json"
"""The run folder's record of each start (experiments/framework/training.py writes it)."""


def resolve_mode(mode: str, environ: Mapping[str, str] | None = None) -> str:
    """The concrete W&B mode for `mode` ("auto" looks at the environment)."""
    environ = os.environ if environ is None else environ
    if mode != "auto":
        return mode
    if environ.get("WANDB_MODE"):
        return environ["WANDB_MODE"]
    return "online" if environ.get("WANDB_API_KEY") else "offline"


def this_start_record(run_path: Path) -> dict[str, Any]:
    """This process's entry of the run folder's provenance.json (its last `starts` entry,
    when this host and process wrote it); {} when there is none or it cannot be read."""
    try:
        starts = json.loads((run_path / PROVENANCE_FILE).read_text()).get("starts") or []
    except (OSError, ValueError, AttributeError):  # missing, unreadable or not an object
        return {}
    last = starts[-1] if isinstance(starts, list) and starts else None
    if not isinstance(last, dict):
        return {}
    # An earlier start's record (a start without the framework's records) is not this one's.
    if last.get("pid") != os.getpid() or last.get("host") != socket.gethostname():
        return {}
    return last


@dataclasses.dataclass(kw_only=True)
class WandbConfig(Configurable["WandbCallback"]):
    """Attributes:
    enabled: log to W&B at all.
    mode: one of WANDB_MODES; "auto" = offline unless WANDB_API_KEY is set.
    project: W&B project; None: the run folder's project.
    name: W&B run name; None: the run folder's name.
    entity: W&B team or user; None: the key's default.
    tags: labels shown in the W&B UI.
    group: W&B run group: the study a run belongs to; None: no group.
    job_type: W&B job type: the study's variant this run trains; None: none.
    notes: W&B run notes: the study's hypothesis; None: none.
    replayed_steps: one of REPLAYED_STEPS: how W&B ends up with a resumed attempt's values
        of steps a killed attempt had logged (see the module docstring).
    """

    enabled: bool = True
    mode: str = "auto"
    project: str | None = None
    name: str | None = None
    entity: str | None = None
    tags: tuple[str, ...] = ()
    group: str | None = None
    job_type: str | None = None
    notes: str | None = None
    replayed_steps: str = "rewind"

    def __post_init__(self) -> None:
        if self.mode not in WANDB_MODES:
            raise ValueError(f"WandbConfig.mode must be one of {WANDB_MODES}, got {self.mode!r}")
        if self.replayed_steps not in REPLAYED_STEPS:
            raise ValueError(
                f"WandbConfig.replayed_steps must be one of {REPLAYED_STEPS}, got "
                f"{self.replayed_steps!r}"
            )
        self.tags = tuple(self.tags)

    def build(self) -> WandbCallback:
        return WandbCallback(self)


class WandbCallback(Callback):
    """See the module docstring (LOG phase: after the evaluator adds its scores)."""

    phase = Phase.LOG

    def __init__(self, config: WandbConfig) -> None:
        self.config = config
        self.run: Any = None
        self._started = False
        self._held: list[tuple[int, dict[str, float]]] = []  # "hold": rows not yet covered

    def _run_id_path(self) -> Path:
        return self.trainer.run_dir.wandb_dir / "run_id"

    def _new_run_id(self) -> str:
        run_id = uuid.uuid4().hex[:12]
        path = self._run_id_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(run_id + "\n")
        return run_id

    def provenance(self) -> dict[str, Any]:
        """The W&B config's `provenance` block (see the module docstring)."""
        start = this_start_record(Path(self.trainer.run_dir.path))
        run_config = self.trainer.run_config
        # An experiment config holds the trainer's config; a bare trainer's run config is
        # the trainer config itself (TrainerConfig.build's default).
        trainer_config = getattr(run_config, "trainer", run_config)
        return {
            "commit": start.get("commit"),
            "image": start.get("image"),
            "seed": getattr(trainer_config, "seed", None),
            "study": self.config.group,
            "hypothesis": self.config.notes,
            "variant": self.config.job_type,
        }

    def _start(self, first_step: int) -> None:
        """Start (or continue) the W&B run before step `first_step` trains."""
        import wandb  # heavy import: only when W&B is actually used

        common = dict(
            project=self.config.project or self.trainer.run_project,
            name=self.config.name or self.trainer.run_name,
            entity=self.config.entity,
            tags=list(self.config.tags),
            group=self.config.group,
            job_type=self.config.job_type,
            notes=self.config.notes,
            mode=resolve_mode(self.config.mode),
            dir=str(self.trainer.run_dir.path),
            config={
                **serialization.to_dict(self.trainer.run_config),
                "provenance": self.provenance(),
            },
        )
        path = self._run_id_path()
        run_id = path.read_text().strip() if path.exists() else ""
        if not run_id:  # a first attempt (or one killed while writing the id: nothing logged)
            self.run = wandb.init(id=self._new_run_id(), resume="allow", **common)
            return
        resumed_from = first_step - 1
        if self.config.replayed_steps == "rewind":
            # An earlier attempt may have logged steps past `resumed_from`, which this one
            # trains again: rewinding drops them, so the values logged next are kept.
            try:
                self.run = wandb.init(resume_from=f"{run_id}?_step={resumed_from}", **common)
                return
            except Exception as error:  # a W&B server without run rewind
                logger.warning(
                    "could not rewind W&B run %s to step %d (%s); continuing it without: W&B "
                    "keeps an earlier attempt's values of steps after %d where it logged "
                    "them (metrics.jsonl has this attempt's). replayed_steps='hold' avoids it",
                    run_id,
                    resumed_from,
                    error,
                    resumed_from,
                )
        self.run = wandb.init(id=run_id, resume="allow", **common)

    def pre_step(self, step: int) -> None:
        if self.trainer.is_main and not self._started:
            self._started = True
            self._start(first_step=step)

    def post_step(self, step: int, metrics: Metrics) -> None:
        if self.run is None or not self.trainer.is_log_step(step):
            return
        row = {f"train/{k}": v for k, v in metrics.items() if k != "step"}
        if self.config.replayed_steps == "hold":
            self._held.append((step, row))
        else:
            self.run.log(row, step=step)

    def _send_held(self, up_to_step: int | None) -> None:
        """Log the held rows of steps <= `up_to_step` (None: all of them)."""
        while self._held and (up_to_step is None or self._held[0][0] <= up_to_step):
            step, row = self._held.pop(0)
            self.run.log(row, step=step)

    def on_checkpoint(self, step: int, path: Path) -> None:
        if self.run is not None:
            self._send_held(up_to_step=step)

    def _finish(self, exit_code: int) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None

    def post_train(self) -> None:
        if self.run is not None:
            self._send_held(up_to_step=None)  # training ended: no step is replayed
        self._finish(0)

    def on_error(self, error: BaseException) -> None:
        if self._held:
            logger.info(
                "%d logged steps after the last checkpoint were not sent to W&B (a resume "
                "trains them again; metrics.jsonl has them): steps %d-%d",
                len(self._held),
                self._held[0][0],
                self._held[-1][0],
            )
            self._held.clear()
        self._finish(1)
