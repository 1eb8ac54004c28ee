"""Reproduce a run from its run folder alone, and say the first step whose metrics differ.

    report = reproduce_run(Path("runs/2026_12_03_study/base_s0"))
    print(format_report(report))

The run folder says everything a re-run needs (experiments/framework/training.py):
provenance.json (experiment, cluster, and per start the commit and the image digest),
overrides.txt (the overrides as typed, seed included), config.yaml (the data folder and the
`launch` section), identity.json (the fingerprint, dirty trees included). The reproduction is
a new run `<run>_repro<k>` (the first free k) in the same project and run root, so it sits
next to the original and the original is never written into.

Where it trains (`where`):
    image  the recorded image, by digest, on the recorded cluster (launcher.api.resubmit_image;
           no gate and no build: the image was gated when it was first launched), followed
           until the job ends. The same code, dependencies and launch settings.
    here   this machine, one process, the recorded commit: this checkout when HEAD is that
           commit and the tree is clean, else a temporary `git worktree` of the commit
           (removed afterwards), run with this interpreter and its packages, as
           `python -m experiments.<experiment> train <new run> <cluster> <overrides>`.
    auto   image when one is recorded, else here.
A run trained from a dirty tree (`<sha>+dirty.<hash>` or `dirty: true`) is refused: the
edit that made its numbers is not in any commit.

The comparison: every step the original logged must be logged by the reproduction with the
same value for every key that is not a timing (TIMING_SUFFIXES), exactly: the same code on the
same data with the same seeds computes the same floats on a CPU. The first (step, key) that
differs is reported. The final checkpoints' model weights are compared too when both exist
and are small enough to load in seconds (WEIGHTS_COMPARE_MAX_BYTES).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from experiments.framework import identity
from experiments.framework.errors import CommandError
from models.names import names
from models.train.callbacks import metrics_logger

WHERE = ("auto", "image", "here")

TIMING_SUFFIXES = ("_time_s", "_per_s", "/seconds")
"""Keys that measure the machine, not the computation: the trainer's step_time_s,
samples_per_s and tokens_per_s, and each evaluator task's eval/<task>/seconds."""

# Loading both final model checkpoints costs about 1 s per 300 MB read on the 2-core dev
# machine; above 1 GiB each (a base encoder is ~0.4 GB in fp32) the comparison is skipped.
WEIGHTS_COMPARE_MAX_BYTES = 1 << 30

# The first free `<run>_repro<k>` is searched up to this k; more reproductions of one run
# than that are a sign of a loop, not of science.
MAX_REPRODUCTIONS = 1000

OVERRIDES_FILE = "overrides.txt"
PROJECT_FLAG = "--trainer.callbacks.wandb.project"


class ReproduceError(CommandError):
    """The run cannot be reproduced as asked (exit 2), or the re-run failed (exit 1)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message, exit_code=exit_code)


class Difference(NamedTuple):
    """The first logged value the reproduction did not match."""

    step: int
    key: str
    original: Any
    reproduced: Any


@dataclasses.dataclass(frozen=True)
class ReproduceReport:
    """What a reproduction found.

    Attributes:
        original: the original run folder.
        reproduction_dir: the new run's folder.
        commit: the commit both ran.
        image: the image the reproduction ran (None: it ran here, from the commit).
        steps_compared: logged steps of the original that were compared.
        first_difference: the first (step, key, original, reproduced) that differs; None when
            every compared step matched.
        setup_differences: how the reproduction's recorded identity (experiment, commit,
            config without volatile fields, identity.py) differs from the original's.
        weights: "identical at step N", "differ at step N (<tensor>)" or why not compared.
        notes: what may make the numbers differ for a known reason (other process count).
    """

    original: Path
    reproduction_dir: Path
    commit: str
    image: str | None
    steps_compared: int
    first_difference: Difference | None
    setup_differences: tuple[str, ...] = ()
    weights: str = ""
    notes: tuple[str, ...] = ()

    @property
    def identical(self) -> bool:
        return self.first_difference is None and not self.setup_differences


@dataclasses.dataclass(frozen=True)
class RunRecords:
    """What a run folder says about how to train the run again."""

    run_dir: Path
    experiment: str
    cluster: str
    project: str
    run_root: Path
    commit: str
    image: str | None
    overrides: tuple[str, ...]
    h5_dir: str | None
    launch: Mapping[str, Any]
    world_sizes: tuple[int, ...]


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReproduceError(f"{path.parent} has no {path.name} ({what}); it is not a run folder "
                             "that training wrote, or it is incomplete") from None  # fmt: skip
    except (OSError, ValueError) as error:
        raise ReproduceError(f"{path} is unreadable ({str(error)[:80]}): {what}") from None
    if not isinstance(document, dict):
        raise ReproduceError(f"{path} is not a JSON object: {what}")
    return document


def read_overrides(run_dir: Path) -> tuple[str, ...]:
    """The overrides the run was trained with, as typed (overrides.txt without comments)."""
    path = Path(run_dir) / OVERRIDES_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ReproduceError(
            f"{run_dir} has no {OVERRIDES_FILE}, so the overrides it was trained with are "
            "unknown; only runs that training wrote records for can be reproduced"
        ) from None
    lines = (line.strip() for line in text.splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


def dirty_reason(provenance: Mapping[str, Any], record: Mapping[str, Any] | None) -> str | None:
    """Why the run's code is not in any commit (a dirty tree), or None."""
    commits = [str(start.get("commit")) for start in provenance.get("starts", [])]
    if record is not None:
        commits.append(str(record.get("commit")))
    if dirty := next((commit for commit in commits if "+dirty" in commit), None):
        return f"it was trained from uncommitted changes ({dirty[:60]})"
    if any(start.get("dirty") is True for start in provenance.get("starts", [])):
        return "it was trained from a tree with uncommitted changes (provenance: dirty)"
    return None


def read_records(run_dir: Path) -> RunRecords:
    """The run folder's records; ReproduceError (one line) when they cannot be re-run."""
    run_dir = Path(run_dir).absolute()
    if not run_dir.is_dir():
        raise ReproduceError(
            f"run folder {run_dir} does not exist; give a run folder "
            "(<run root>/<project>/<run>, e.g. runs/2026_12_03_study/base_s0)"
        )
    overrides = read_overrides(run_dir)
    provenance = _read_json(run_dir / "provenance.json", "the run's commit and image")
    record = identity.read_record(run_dir)
    starts = provenance.get("starts") or []
    if not starts or not isinstance(starts, list):
        raise ReproduceError(f"{run_dir}/provenance.json records no start of the run")
    if reason := dirty_reason(provenance, record):
        raise ReproduceError(
            f"{run_dir.name} cannot be reproduced: {reason}, which no commit holds; reproduce "
            "a run launched from a clean, committed tree"
        )
    commit = str(starts[-1].get("commit") or "")
    if not commit or commit == "unknown":
        raise ReproduceError(
            f"{run_dir}/provenance.json records no commit (trained outside a git checkout), "
            "so the code that trained it is unknown"
        )
    experiment = str(provenance.get("experiment") or "")
    if problem := names.experiment_problem(experiment):
        raise ReproduceError(f"{run_dir}/provenance.json: {problem}")
    cluster = str(provenance.get("cluster") or "")
    if problem := names.cluster_problem(cluster):
        raise ReproduceError(f"{run_dir}/provenance.json: {problem}")
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ReproduceError(f"{run_dir}/config.yaml is unreadable ({str(error)[:80]})") from None
    dataset = config.get("dataset") or {}
    return RunRecords(
        run_dir=run_dir,
        experiment=experiment,
        cluster=cluster,
        project=run_dir.parent.name,
        run_root=run_dir.parent.parent,
        commit=commit,
        image=starts[-1].get("image") or None,
        overrides=overrides,
        h5_dir=dataset.get("h5_dir"),
        launch=config.get("launch") or {},
        world_sizes=tuple(int(start.get("world_size") or 1) for start in starts),
    )


def next_run_name(records: RunRecords) -> str:
    """`<run>_repro<k>` with the first k >= 1 whose folder does not exist in the project."""
    project_dir = records.run_root / records.project
    for k in range(1, MAX_REPRODUCTIONS + 1):
        name = f"{records.run_dir.name}_repro{k}"
        if not (project_dir / name).exists():
            return name
    raise ReproduceError(
        f"{records.run_dir.name} already has {MAX_REPRODUCTIONS} reproductions in "
        f"{project_dir}; delete old ones or pass a new run name"
    )


def is_timing_key(key: str) -> bool:
    return key.endswith(TIMING_SUFFIXES)


def read_metrics(path: Path) -> dict[int, dict[str, Any]]:
    """metrics.jsonl by step (metrics_logger.read_metrics: a torn last line is skipped)."""
    return {
        int(record["step"]): record
        for record in metrics_logger.read_metrics(Path(path))
        if isinstance(record, dict) and "step" in record
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and type(a) is type(b)


def compare_metrics(
    original: Mapping[int, Mapping[str, Any]], reproduced: Mapping[int, Mapping[str, Any]]
) -> tuple[int, Difference | None]:
    """(steps compared, the first difference or None), over the original's logged steps.

    A step the reproduction did not log differs at key "step"; a key either side lacks
    differs with "<absent>" on that side.
    """
    for count, step in enumerate(sorted(original), start=1):
        if step not in reproduced:
            return count, Difference(step, "step", step, "<absent>")
        a, b = original[step], reproduced[step]
        for key in sorted(set(a) | set(b)):
            if is_timing_key(key):
                continue
            left, right = a.get(key, "<absent>"), b.get(key, "<absent>")
            if not _same(left, right):
                return count, Difference(step, key, left, right)
    return len(original), None


def compare_weights(original: Path, reproduced: Path) -> str:
    """The two runs' newest complete checkpoints' model weights, in words."""
    from models.train import checkpoint

    newest = checkpoint.list_complete(Path(original) / "checkpoints")
    if not newest:
        return "not compared: the original has no complete checkpoint"
    step, original_ckpt = newest[-1]
    repro_ckpt = dict(checkpoint.list_complete(Path(reproduced) / "checkpoints")).get(step)
    if repro_ckpt is None:
        return f"not compared: the reproduction has no checkpoint of step {step}"
    # The model part's bytes whole: model.pt's size, or a sharded checkpoint's by its index.
    sizes = [checkpoint.part_bytes(path, "model") for path in (original_ckpt, repro_ckpt)]
    if max(sizes) > WEIGHTS_COMPARE_MAX_BYTES:
        return f"not compared: the model weights are {max(sizes) / 2**30:.1f} GiB"
    import torch

    a = checkpoint.load(original_ckpt, parts=["model"])["model"]
    b = checkpoint.load(repro_ckpt, parts=["model"])["model"]
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b or not torch.equal(a[name], b[name]):
            return f"differ at step {step} (first: {name})"
    return f"identical at step {step} ({len(a)} tensors)"


# -- training the reproduction ------------------------------------------------------------

Checkout = Callable[[Path, str], AbstractContextManager[Path]]
"""(workspace, commit) -> a context giving a source tree at exactly that commit."""


def _git(workspace: Path, *args: str) -> str | None:
    out = identity.git_output(workspace, *args)
    return None if out is None else out.strip()


@contextlib.contextmanager
def commit_checkout(workspace: Path, commit: str) -> Iterator[Path]:
    """A source tree at `commit`: the workspace itself when its HEAD is that commit and its
    tracked files are unchanged, else a temporary `git worktree` of it (removed on exit)."""
    head = _git(workspace, "rev-parse", "HEAD")
    if head is None:
        raise ReproduceError(
            f"{workspace} is not a git checkout, so commit {commit[:12]} cannot be checked "
            "out; run the reproduction from a terra-lab clone"
        )
    if head == commit and _git(workspace, "status", "--porcelain", "--untracked-files=no") == "":
        yield workspace
        return
    if _git(workspace, "cat-file", "-e", f"{commit}^{{commit}}") is None:
        raise ReproduceError(
            f"commit {commit[:12]} is not in {workspace}; fetch it (git fetch origin "
            f"{commit[:12]}) and reproduce again"
        )
    parent = Path(tempfile.mkdtemp(prefix="terra-lab-reproduce-"))
    tree = parent / "tree"
    try:
        if _git(workspace, "worktree", "add", "--detach", str(tree), commit) is None:
            raise ReproduceError(
                f"git could not check out commit {commit[:12]} into a worktree of {workspace}"
            )
        yield tree
    finally:
        if tree.exists():
            _git(workspace, "worktree", "remove", "--force", str(tree))
        shutil.rmtree(parent, ignore_errors=True)
        _git(workspace, "worktree", "prune")


def child_pythonpath(code_root: Path, path: Sequence[str] | None = None) -> str:
    """PYTHONPATH for a child that must import terra-lab from `code_root` alone: the code
    root, then this process's import path without any entry holding terra-lab's own packages
    (a Bazel runfiles tree or a checkout), which would shadow the commit's code."""
    kept = [str(code_root)]
    for entry in sys.path if path is None else path:
        if not entry or (Path(entry) / "experiments" / "__init__.py").is_file():
            continue
        if entry not in kept:
            kept.append(entry)
    return os.pathsep.join(kept)


def project_overrides(records: RunRecords) -> list[str]:
    """The recorded overrides, plus the project when it was a default (which is dated by the
    day it was resolved, so today's default would be another project)."""
    overrides = list(records.overrides)
    if not any(item.startswith(PROJECT_FLAG + "=") for item in overrides):
        overrides.append(f"{PROJECT_FLAG}={records.project}")
    return overrides


def _data_dir(records: RunRecords, environ: Mapping[str, str]) -> str:
    if records.h5_dir and Path(records.h5_dir).is_dir():
        return records.h5_dir
    if environ.get("TERRA_DATA_DIR"):
        return environ["TERRA_DATA_DIR"]
    raise ReproduceError(
        f"{records.run_dir.name} read its data from {records.h5_dir}, which this machine does "
        "not have; set TERRA_DATA_DIR to the same data, or reproduce on its cluster (image)"
    )


def train_here(
    records: RunRecords,
    run_name: str,
    code_root: Path,
    python: str = sys.executable,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """Train `run_name` from `code_root` in a child process, as a job would; its run folder."""
    environ = dict(os.environ if environ is None else environ)
    env = {
        **environ,
        "PYTHONPATH": child_pythonpath(code_root),
        # The framework's workspace (clusters.yaml, local run root) is the commit's tree.
        "BUILD_WORKSPACE_DIRECTORY": str(code_root),
        "TERRA_RUN_ROOT": str(records.run_root),
        "TERRA_DATA_DIR": _data_dir(records, environ),
        # As inside a job: the code's commit, checked by the caller, names the run's code.
        "TERRA_LAB_COMMIT": records.commit,
    }
    for variable in ("TERRA_LAB_IMAGE", "TERRA_LAB_JOB_ID", "SLURM_JOB_ID", "RANK", "WORLD_SIZE"):
        env.pop(variable, None)
    command = [
        python, "-m", f"experiments.{records.experiment}",
        "train", run_name, records.cluster, *project_overrides(records),
    ]  # fmt: skip
    print(f"[reproduce] {' '.join(command[2:])} (from {code_root})", file=sys.stderr, flush=True)
    status = subprocess.run(command, cwd=code_root, env=env, check=False).returncode
    run_dir = records.run_root / records.project / run_name
    if status != 0:
        raise ReproduceError(
            f"the reproduction's training exited with status {status} (its output is above; "
            f"run folder {run_dir})",
            exit_code=1,
        )
    return run_dir


def train_image(records: RunRecords, run_name: str, wait: bool = True) -> Path:
    """Run the recorded image on the recorded cluster (launcher.api) until it ends."""
    from launcher import api as launcher_api
    from models.config import serialization

    assert records.image is not None
    try:
        launch = serialization.from_dict(dict(records.launch), launcher_api.LaunchSettings)
    except (ValueError, TypeError) as error:
        raise ReproduceError(f"{records.run_dir}/config.yaml: launch section: {error}") from None
    try:
        result = launcher_api.resubmit_image(
            records.experiment, run_name, records.cluster, project_overrides(records),
            image=records.image, commit=records.commit, wandb_project=records.project,
            launch=launch, wait=wait,
        )  # fmt: skip
    except launcher_api.LaunchFailed as error:
        raise ReproduceError(str(error), exit_code=1) from None
    except ValueError as error:
        raise ReproduceError(str(error)) from None
    if wait and result.state.value != "COMPLETED":
        raise ReproduceError(
            f"the reproduction job {result.job_id} ended {result.state.value} {result.detail}"
            f"; its log: ./tools/bazel run //launcher:jobs -- logs {records.cluster} "
            f"{result.job_id}",
            exit_code=1,
        )
    return result.run_dir


def _setup_differences(original: Path, reproduced: Path) -> tuple[str, ...]:
    before, after = identity.read_record(original), identity.read_record(reproduced)
    if before is None or after is None:
        return ("identity.json missing: the setups could not be compared",)
    fingerprint = identity.Fingerprint(
        str(after.get("experiment")), str(after.get("commit")), dict(after.get("config") or {})
    )
    return tuple(identity.differences(before, fingerprint))


def reproduce_run(
    run_dir: Path,
    new_run_name: str | None = None,
    where: str = "auto",
    *,
    workspace: Path | None = None,
    checkout: Checkout = commit_checkout,
    python: str = sys.executable,
    environ: Mapping[str, str] | None = None,
) -> ReproduceReport:
    """Train `run_dir`'s run again into `<run>_repro<k>` and compare (module docstring).

    Args:
        run_dir: the original run folder.
        new_run_name: the reproduction's name; default: the first free `<run>_repro<k>`.
        where: "auto", "image" or "here".
        workspace: the checkout `here` takes the commit from; default: launcher.api's.
        checkout: how `here` gets a tree at the commit (tests pass their own).
        python: the interpreter `here` trains with.
        environ: the environment `here` trains in (default: this process's).

    Raises:
        ReproduceError: one line; exit_code 2 for a run that cannot be reproduced as asked,
            1 when the re-run failed.
    """
    if where not in WHERE:
        raise ReproduceError(f"where must be one of {', '.join(WHERE)}, got {where!r}")
    records = read_records(run_dir)
    original_metrics = read_metrics(records.run_dir / "metrics.jsonl")
    if not original_metrics:
        raise ReproduceError(f"{records.run_dir} logged no metrics (metrics.jsonl): nothing "
                             "to compare a reproduction with")  # fmt: skip
    run_name = new_run_name or next_run_name(records)
    if problem := names.run_name_problem(run_name):
        raise ReproduceError(problem)
    target = records.run_root / records.project / run_name
    if target.exists():
        raise ReproduceError(f"{target} exists; choose another name for the reproduction")
    mode = where if where != "auto" else ("image" if records.image else "here")
    if mode == "image" and not records.image:
        raise ReproduceError(
            f"{records.run_dir.name} records no image (it was trained outside a launched "
            "job); reproduce it here (where='here')"
        )
    notes = []
    if mode == "here" and max(records.world_sizes) > 1:
        notes.append(
            f"the original trained on {max(records.world_sizes)} processes and this "
            "reproduction on 1: the batches are split differently, so values may differ"
        )
    if mode == "image":
        reproduction = train_image(records, run_name)
        if reproduction.parent.parent != records.run_root:
            notes.append(
                f"the job wrote to {records.cluster}'s run root {reproduction.parent.parent}, "
                f"not the original's {records.run_root} (another checkout's clusters.yaml)"
            )
    else:
        from launcher import api as launcher_api

        root = Path(workspace or launcher_api.workspace_root())
        with checkout(root, records.commit) as code_root:
            reproduction = train_here(records, run_name, code_root, python, environ)
    steps, first = compare_metrics(original_metrics, read_metrics(reproduction / "metrics.jsonl"))
    return ReproduceReport(
        original=records.run_dir,
        reproduction_dir=reproduction,
        commit=records.commit,
        image=records.image if mode == "image" else None,
        steps_compared=steps,
        first_difference=first,
        setup_differences=_setup_differences(records.run_dir, reproduction),
        weights=compare_weights(records.run_dir, reproduction),
        notes=tuple(notes),
    )


def format_report(report: ReproduceReport) -> str:
    """The report in a few lines: the verdict first."""
    code = f"image {report.image}" if report.image else f"commit {report.commit[:12]} here"
    if report.first_difference is None:
        verdict = f"identical at all {report.steps_compared} logged steps"
    else:
        step, key, a, b = report.first_difference
        verdict = (
            f"differs first at step {step}, {key}: original {json.dumps(a)}, reproduced "
            f"{json.dumps(b)} ({report.steps_compared - 1} logged steps before it identical)"
        )
    lines = [
        f"reproduced {report.original.name} ({code}): {verdict}",
        f"  original      {report.original}",
        f"  reproduction  {report.reproduction_dir}",
        "  timings       not compared (" + ", ".join(f"*{s}" for s in TIMING_SUFFIXES) + ")",
    ]
    if report.weights:
        lines.append(f"  weights       {report.weights}")
    for difference in report.setup_differences:
        lines.append(f"  setup differs {difference}")
    for note in report.notes:
        lines.append(f"  note          {note}")
    return "\n".join(lines)
