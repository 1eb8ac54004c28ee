"""`train`: build every component from an ExperimentConfig and run models/train's Trainer.

Works the same as one process or as one rank of `torchrun` (the trainer reads RANK and
WORLD_SIZE). Rank 0 alone writes the run folder `runs/<project>/<run>/`:

    config.yaml       the resolved ExperimentConfig (serialization.load rebuilds it)
    overrides.txt     the command-line overrides, one per line, re-typeable as they are
    provenance.json   experiment, Bazel label, git commit, host, cluster, start time
    metrics.jsonl     checkpoints/step_<N>/   wandb/   plots/loss.png
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import platform
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from experiments.framework import data, identity
from experiments.framework.errors import CommandError
from experiments.framework.experiment_config import ExperimentConfig
from experiments.framework.overrides import AppliedOverride
from models.train.callbacks.callback import Callback, Phase
from models.train.callbacks.wandb_logger import PROVENANCE_FILE

if TYPE_CHECKING:
    from experiments.framework.resolution import Invocation

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainResult:
    """Where a finished run left its outputs."""

    run_dir: Path
    steps: int
    seconds: float
    final_metrics: dict[str, float]
    checkpoints: list[Path]

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    @property
    def loss_plot(self) -> Path:
        return self.run_dir / "plots" / "loss.png"

    @property
    def wandb_dir(self) -> Path:
        return self.run_dir / "wandb"


def git_state(workspace: Path) -> dict[str, Any]:
    """Commit, branch and dirtiness of the workspace (empty values outside a checkout)."""

    def git(*args: str) -> str | None:
        out = identity.git_output(workspace, *args)
        return None if out is None else out.strip()

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": os.environ.get("TERRA_LAB_COMMIT") or git("rev-parse", "HEAD"),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": None if status is None else bool(status),
    }


class RunRecordCallback(Callback):
    """Writes overrides.txt and provenance.json when training starts (rank 0, under the lock).

    It is a models.train Callback; written here (not at parse time) so a second process
    that fails to take the run folder's lock never overwrites the first one's records.
    It writes in `pre_train`, which the trainer calls after it resumed: `trainer.step` is
    then the step this start continues from (provenance's `resumed_at_step`).
    """

    phase = Phase.RECORD

    def __init__(
        self,
        experiment: str,
        cluster: str,
        applied: Sequence[AppliedOverride],
        workspace: Path,
    ) -> None:
        self.experiment = experiment
        self.cluster = cluster
        self.applied = list(applied)
        self.workspace = workspace

    def pre_train(self) -> None:
        if not self.trainer.is_main:
            return
        run_path = Path(self.trainer.run_dir.path)
        lines = [f"{a.override.text}\n" for a in self.applied]
        header = (
            f"# overrides of {self.experiment} (cluster {self.cluster}); one per line, as typed.\n"
            f"# Re-run: ./tools/bazel run //experiments:{self.experiment} -- train "
            f"{run_path.name} {self.cluster} $(grep -v '^#' overrides.txt)\n"
        )
        _write_text(run_path / "overrides.txt", header + "".join(lines))
        # The W&B callback reads this start's entry (commit, image) for its run's config.
        provenance_path = run_path / PROVENANCE_FILE
        provenance = _read_provenance(provenance_path)
        starts = provenance.get("starts", [])
        starts.append(
            {
                "time": datetime.datetime.now(datetime.UTC).isoformat(),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "resumed_at_step": int(self.trainer.step),
                "world_size": int(self.trainer.env.world_size),
                "job_id": os.environ.get("TERRA_LAB_JOB_ID") or os.environ.get("SLURM_JOB_ID"),
                "image": os.environ.get("TERRA_LAB_IMAGE"),
                **git_state(self.workspace),
            }
        )
        provenance.update(
            {
                "experiment": self.experiment,
                "bazel_label": f"//experiments:{self.experiment}",
                "cluster": self.cluster,
                "python": platform.python_version(),
                "argv": sys.argv,
                "starts": starts,
            }
        )
        _write_text(provenance_path, json.dumps(provenance, indent=2) + "\n")


def _read_provenance(path: Path) -> dict[str, Any]:
    """The provenance record so far; a corrupt one is moved aside (kept), never blocking."""
    if not path.exists():
        return {}
    try:
        provenance = json.loads(path.read_text(errors="replace"))
        if isinstance(provenance, dict) and isinstance(provenance.get("starts", []), list):
            return provenance
    except ValueError:
        pass
    kept = path.with_name(f"provenance.corrupt-{time.strftime('%Y%m%d-%H%M%S')}.json")
    os.replace(path, kept)
    logger.warning("provenance.json was unreadable; moved it to %s and started a new one", kept)
    return {}


class RunIdentityCallback(Callback):
    """Claims the run folder for this setup before anything reads or writes it (rank 0).

    The command line checked the identity already (a fast, clear refusal); this repeats
    the check under the run folder's lock, which the trainer takes before `open_run`, so
    two starts racing for one new name cannot both pass: the second sees the first's
    identity.json. It runs in `open_run`, the first hook: before the trainer resumes from
    (or cleans up) the folder's checkpoints, the config saver writes config.yaml and W&B
    picks its run id; and first within it (phase CLAIM).
    """

    phase = Phase.CLAIM

    def __init__(
        self, fingerprint: identity.Fingerprint, resume: bool, job_id: str | None, label: str
    ) -> None:
        self.fingerprint = fingerprint
        self.resume = resume
        self.job_id = job_id
        self.label = label
        self.claim: identity.Claim | None = None

    def open_run(self) -> None:
        if not self.trainer.is_main:
            return
        run_path = Path(self.trainer.run_dir.path)
        self.claim = identity.check(
            run_path, self.fingerprint, self.resume, self.job_id, self.label
        )
        identity.write_record(self.claim, self.fingerprint, self.job_id)
        if self.claim.kind != "new":
            logger.info("%s: continuing %s (%s)", self.label, run_path, self.claim.kind)


class LastMetricsCallback(Callback):
    """Keeps the metrics of the newest step (for the closing summary); OBSERVE: after the
    evaluator added its scores."""

    phase = Phase.OBSERVE

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}

    def post_step(self, step: int, metrics: dict[str, float]) -> None:
        self.metrics = dict(metrics)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def cpu_threads_for(num_workers: int, environ: Mapping[str, str] | None = None) -> int | None:
    """Intra-op threads for a CPU step: the cores the loader workers leave free.

    Measured on the 2-core dev machine (nano, CPU quickstart step, 1 loader worker): 0.29
    CPU-seconds per step with 1 thread, 3.9-7.4 with 2, because the second thread spins
    on a core the loader worker needs. None: the user chose (OMP_NUM_THREADS is set).
    """
    environ = os.environ if environ is None else environ
    if environ.get("OMP_NUM_THREADS"):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) - num_workers)


def set_cpu_threads(config: ExperimentConfig) -> None:
    import torch

    if torch.cuda.is_available():
        return
    threads = cpu_threads_for(int(getattr(config.data_loader, "num_workers", 0)))
    if threads is not None:
        torch.set_num_threads(threads)


def train(
    config: ExperimentConfig,
    callbacks: Sequence[Any] = (),
    device: Any = None,
) -> TrainResult:
    """Train `config` to its max duration (resuming from the run's newest checkpoint).

    Generates the embedded dataset first when the config uses it, then hands the config
    to models.train.pretrain.train (seeding, process group, model, data, trainer). A new
    run with `config.init_from` starts from those weights (init_from.py).

    Args:
        config: a resolved experiment config (e.g. serialization.load("runs/p/r/config.yaml")).
        callbacks: extra models.train callbacks.
        device: torch device; default: this rank's GPU, else the CPU.
    """
    from experiments.framework import init_from
    from models.train import checkpoint, pretrain

    # Read and checked before anything else: weights that do not fit refuse the start
    # before the dataset is generated or the run folder is touched.
    init = init_from.callbacks_for(config)
    data.ensure_dataset(config.dataset.h5_dir)
    set_cpu_threads(config)
    last = LastMetricsCallback()
    started = time.perf_counter()
    trainer = pretrain.train(config, callbacks=[*init, *callbacks, last], device=device)
    run_dir = Path(trainer.run_dir.path)
    return TrainResult(
        run_dir=run_dir,
        steps=trainer.step,
        seconds=time.perf_counter() - started,
        final_metrics=last.metrics,
        checkpoints=[path for _, path in checkpoint.list_complete(run_dir / "checkpoints")],
    )


def summary(result: TrainResult, config: ExperimentConfig) -> str:
    """The closing message: what trained, and where everything is."""
    loss = result.final_metrics.get("loss")
    wandb_runs = sorted(result.wandb_dir.glob("*run-*"))
    offline = [p for p in wandb_runs if p.name.startswith("offline-run-")]
    lines = [
        f"trained {config.experiment} run {config.run_name}: {result.steps} steps in "
        f"{result.seconds:.0f} s" + (f", final loss {loss:.4f}" if loss is not None else ""),
        f"  run folder   {result.run_dir}",
        f"  config       {result.run_dir / 'config.yaml'} (overrides: overrides.txt)",
        f"  checkpoints  {', '.join(str(p) for p in result.checkpoints) or '(none)'}",
        f"  metrics      {result.metrics_path}",
        f"  loss plot    {result.loss_plot if result.loss_plot.exists() else '(not written)'}",
    ]
    scores = {k: v for k, v in result.final_metrics.items() if k.startswith("eval/")}
    if scores:
        shown = ", ".join(
            f"{key.removeprefix('eval/')} {value:.3f}"
            for key, value in scores.items()
            if not key.endswith("/seconds")
        )
        lines.append(f"  downstream   {shown} (step {result.steps}; also in metrics.jsonl)")
    if offline:
        lines.append(f"  W&B run      {offline[-1]} (offline; upload: wandb sync {offline[-1]})")
    elif wandb_runs:
        lines.append(f"  W&B run      {wandb_runs[-1]}")
    else:
        lines.append("  W&B run      (W&B disabled)")
    return "\n".join(lines)


def train_command(invocation: Invocation, stdout: TextIO, stderr: TextIO) -> int:
    from launcher import api as launcher_api

    config = invocation.config
    if (
        data.uses_default_dataset(config.dataset.h5_dir)
        and not (Path(config.dataset.h5_dir) / "sample_metadata.csv").exists()
    ):
        print(
            "generating the embedded synthetic dataset (first run on this machine; "
            "about half a minute)...",
            file=stderr,
        )
    workspace = launcher_api.workspace_root()
    fingerprint = identity.Fingerprint.of(
        invocation.experiment, identity.workspace_commit(workspace), config.as_dict()
    )
    job_id = os.environ.get("TERRA_LAB_JOB_ID") or os.environ.get("SLURM_JOB_ID") or None
    label = identity.run_label(config.trainer.run)
    # A quick refusal before the model is built; the callback repeats it under the lock.
    identity.check(config.trainer.run.build().path, fingerprint, invocation.resume, job_id, label)
    claim = RunIdentityCallback(fingerprint, invocation.resume, job_id, label)
    record = RunRecordCallback(
        invocation.experiment,
        invocation.cluster,
        invocation.applied,
        workspace,
    )
    try:
        result = train(config, callbacks=[claim, record])
    except CommandError:
        raise
    except (ValueError, RuntimeError, OSError) as error:
        raise CommandError(f"training failed: {error}") from error
    if int(os.environ.get("RANK", "0")) == 0:  # one summary per job, not one per rank
        print(summary(result, config), file=stdout)
    return 0
