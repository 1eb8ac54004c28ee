"""A run is an identity: (project, run name) owns one fingerprint, written once.

The fingerprint of a run is what makes its numbers what they are:
    experiment   the variant that built the config
    commit       the code (a dirty local tree adds a hash of its diff: `<sha>+dirty.<hash>`)
    config       a SHA-256 of the resolved config without its volatile fields (below)

It lives in `<run folder>/identity.json` with the config it hashed (flattened, so a refusal
can name the keys that differ) and the ids of the jobs that trained the run. A `train` or
`launch` into a run folder that already holds a run is refused (exit 2) unless
  - it is the same job being requeued (Slurm keeps the job id across a requeue; the local
    backend's id is the job's own), or
  - the user asks to continue it (`--resume`) and the fingerprint matches.
A different experiment, commit or config is refused even with `--resume`: the run's
numbers would mix two setups. Pick another run name for another setup.

Volatile fields, which neither name the setup nor change what a step computes, are left
out of the hash, so they may change on an explicit resume:
    trainer.max_duration   train a finished run further (`--trainer.max_steps=2000`)
    trainer.callbacks.progress   how often the progress line prints
    trainer.callbacks.wandb      where and how metrics are mirrored (mode, tags, replayed
                           steps); its project and run name cannot be overridden (resolution.py)
    launch                 nodes, GPUs, partitions, priority (a requeue may land elsewhere)
    visualize              what `visualize` draws
    trainer.run            the run folder itself (root, project, name: the identity's key)
    dataset.h5_dir         a mount path: the submitting machine and the job's container see
                           the same data at different paths
    experiment, run_name, cluster   named by the command line (the experiment is compared
                           on its own)
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments.framework.diff import flatten
from experiments.framework.errors import CommandError

FILE_NAME = "identity.json"
FORMAT_VERSION = 1

VOLATILE = (
    "experiment",
    "run_name",
    "cluster",
    "launch",
    "visualize",
    "trainer.run",
    "trainer.max_duration",
    "trainer.callbacks.progress",
    "trainer.callbacks.wandb",
    "dataset.h5_dir",
)
"""Dotted prefixes left out of the config hash (module docstring says why)."""

# What a run folder holds once anything trained into it (a run from before identity.json);
# the trainer creates the empty folders (checkpoints/, wandb/, plots/) before any claim.
_RUN_FILES = ("config.yaml", "metrics.jsonl", "provenance.json")


class RunIdentityError(CommandError):
    """A train or launch would mix two setups in one run folder; exit status 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)


def _volatile(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + ".") for prefix in VOLATILE)


def identity_config(config_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The flattened config without volatile fields, as JSON-safe values."""
    flat = flatten(json.loads(json.dumps(config_dict, default=str)))
    return {key: value for key, value in sorted(flat.items()) if not _volatile(key)}


def config_hash(identity: Mapping[str, Any]) -> str:
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """What a run's numbers depend on (module docstring)."""

    experiment: str
    commit: str
    config: dict[str, Any]

    @property
    def config_sha256(self) -> str:
        return config_hash(self.config)

    @classmethod
    def of(cls, experiment: str, commit: str, config_dict: Mapping[str, Any]) -> Fingerprint:
        return cls(experiment, commit, identity_config(config_dict))


def git_output(workspace: Path, *args: str) -> str | None:
    """What `git -C workspace <args>` prints; None when git is missing, fails or hangs (30 s)."""
    try:
        result = subprocess.run(
            ["git", "-C", str(workspace), *args], capture_output=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.decode(errors="replace")


def workspace_commit(workspace: Path, environ: Mapping[str, str] | None = None) -> str:
    """The code a run trains with: the launched commit inside a job, else the checkout's.

    A dirty checkout adds a hash of `git diff HEAD`, so two different edits on one commit
    are two setups; outside a checkout the commit is "unknown".
    """
    environ = os.environ if environ is None else environ
    if environ.get("TERRA_LAB_COMMIT"):
        return environ["TERRA_LAB_COMMIT"]
    sha = (git_output(workspace, "rev-parse", "HEAD") or "").strip()
    if not sha:
        return "unknown"
    diff = git_output(workspace, "diff", "HEAD", "--binary")
    if diff:
        return f"{sha}+dirty.{hashlib.sha256(diff.encode()).hexdigest()[:12]}"
    return sha


@dataclasses.dataclass(frozen=True)
class Claim:
    """What `check` decided: how this start relates to the run folder."""

    kind: str  # "new", "requeue", "resume" or "adopt" (a run from before identity.json)
    run_dir: Path
    record: dict[str, Any] | None


def _shown(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def differences(record: Mapping[str, Any], fingerprint: Fingerprint) -> list[str]:
    """What differs between a run's recorded identity and `fingerprint`, in words."""
    found = []
    if record.get("experiment") != fingerprint.experiment:
        found.append(f"experiment {record.get('experiment')} -> {fingerprint.experiment}")
    if record.get("commit") != fingerprint.commit:
        found.append(f"commit {str(record.get('commit'))[:20]} -> {fingerprint.commit[:20]}")
    if record.get("config_sha256") != fingerprint.config_sha256:
        old = record.get("config") or {}
        new = fingerprint.config
        keys = sorted(k for k in set(old) | set(new) if old.get(k, "<absent>") != new.get(k))
        shown = ", ".join(
            f"{k} {_shown(old.get(k, '<absent>'))} -> {_shown(new.get(k, '<absent>'))}"
            for k in keys[:4]
        )
        more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
        found.append(f"config {shown}{more}" if keys else "config (hash differs)")
    return found


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The run's identity.json, None when absent; RunIdentityError when unreadable."""
    path = Path(run_dir) / FILE_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise RunIdentityError(f"cannot read {path}: {error.strerror}") from None
    try:
        record = json.loads(text)
        if not isinstance(record, dict) or "config_sha256" not in record:
            raise ValueError("not an identity record")
    except ValueError as error:
        raise RunIdentityError(
            f"{path} is corrupt ({str(error)[:80]}): it says which setup owns the run. "
            f"Restore it, or delete it and rerun with --resume to adopt the run with this "
            "config"
        ) from None
    return record


def run_label(run: Any) -> str:
    """How refusals name a run: "run <name> of project <project>" (`run`: a RunDirConfig)."""
    return f"run {run.name} of project {run.project}"


def _has_run_content(run_dir: Path) -> bool:
    run_dir = Path(run_dir)
    checkpoints = run_dir / "checkpoints"
    return any((run_dir / name).exists() for name in _RUN_FILES) or (
        checkpoints.is_dir() and any(checkpoints.iterdir())
    )


def check(
    run_dir: Path,
    fingerprint: Fingerprint,
    resume: bool,
    job_id: str | None,
    run_label: str,
) -> Claim:
    """May this start train into `run_dir`? Raises RunIdentityError when not.

    Args:
        run_label: how the refusal names the run (e.g. "run nano_a of project 2026_...").
    """
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    if record is None:
        if not _has_run_content(run_dir):
            return Claim("new", run_dir, None)
        if resume:
            return Claim("adopt", run_dir, None)
        raise RunIdentityError(
            f"{run_label} already exists ({run_dir}, written before runs recorded their "
            "identity); pass --resume to continue it with this config, or choose another run "
            "name"
        )
    if found := differences(record, fingerprint):
        raise RunIdentityError(
            f"{run_label} already exists with another setup ({'; '.join(found)}); choose "
            "another run name for this one (--resume continues only the same setup)"
        )
    if job_id and job_id in record.get("jobs", []):
        return Claim("requeue", run_dir, record)
    if resume:
        return Claim("resume", run_dir, record)
    raise RunIdentityError(
        f"{run_label} already exists with this setup ({run_dir}); pass --resume to continue "
        "it, or choose another run name"
    )


def write_record(claim: Claim, fingerprint: Fingerprint, job_id: str | None) -> Path:
    """Record the identity (new or adopted run) and this job's id; atomic replace."""
    record = dict(claim.record or {})
    if claim.record is None:
        record = {
            "version": FORMAT_VERSION,
            "experiment": fingerprint.experiment,
            "commit": fingerprint.commit,
            "config_sha256": fingerprint.config_sha256,
            "created": datetime.datetime.now(datetime.UTC).isoformat(),
            "adopted": claim.kind == "adopt",
            "config": fingerprint.config,
            "jobs": [],
        }
    jobs = list(record.get("jobs", []))
    job = job_id or f"local-{os.getpid()}"
    if job not in jobs:
        jobs.append(job)
    record["jobs"] = jobs
    path = claim.run_dir / FILE_NAME
    claim.run_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{FILE_NAME}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
    os.replace(tmp, path)
    return path
