"""`study.json`: what a study's launches submitted, written atomically after each launch.

    <run root>/<project>/_studies/<study>/study.json

holds the study's commit and image digest (of its first launch), its declaration (baseline,
variants, seeds, grid, hypothesis), and one record per run: name, variant, seed, grid point,
run folder, job id, overrides, the commit and image it was submitted with, and when. A
`launch` that finds the manifest submits only the runs it lacks or whose job failed;
`status`, `compare` and `reproduce` read it. tools/compare reads the same file (format 1).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

FORMAT = 1
FILE_NAME = "study.json"
STUDIES_FOLDER = "_studies"


class ManifestError(ValueError):
    """A study.json that cannot be read; the message names the file and the fix."""


class LaunchInProgress(ValueError):
    """Another `launch` of the same study into the same project holds its lock."""


def manifest_path(run_root: Path, project: str, study: str) -> Path:
    return Path(run_root) / project / STUDIES_FOLDER / study / FILE_NAME


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def read(path: Path) -> dict[str, Any] | None:
    """The manifest at `path`, None when there is none."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ManifestError(
            f"{path} is unreadable ({error}); move it aside to start the study's record anew"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ManifestError(
            f"{path} is not a format-{FORMAT} study manifest; move it aside to start anew"
        )
    if not isinstance(manifest.get("runs"), list):
        raise ManifestError(f"{path} has no list of runs; move it aside to start anew")
    return manifest


def write(path: Path, manifest: Mapping[str, Any]) -> Path:
    """Write `manifest` atomically: a reader sees the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as handle:
        handle.write(json.dumps(dict(manifest), indent=2, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def newest(run_root: Path, study: str, cluster: str | None = None) -> Path | None:
    """The most recently launched manifest of `study` under `run_root` (any project), of
    `cluster` when given (clusters may share a run root, as local and the dev Slurm do)."""
    found = []
    for path in Path(run_root).glob(f"*/{STUDIES_FOLDER}/{study}/{FILE_NAME}"):
        try:
            manifest = read(path) or {}
        except ManifestError:
            manifest = {}
        if cluster is not None and manifest.get("cluster") not in (cluster, None):
            continue
        found.append((str(manifest.get("launched", "")), path.stat().st_mtime, path))
    return max(found)[2] if found else None


def runs_by_name(manifest: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {run["name"]: run for run in (manifest or {}).get("runs", [])}


@contextlib.contextmanager
def launch_lock(path: Path) -> Iterator[None]:
    """Hold the study's launch lock (a flock next to `path`) for the `with` block.

    Two launches of one study at once would both read "nothing submitted yet" and submit
    every run twice; the second is refused instead. The kernel drops the lock when its holder
    exits, however it exits.
    """
    lock = Path(path).with_name(".launch.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LaunchInProgress(
                f"another launch of this study into {Path(path).parents[2].name} is running "
                f"(it holds {lock}); wait for it to end, then launch again: it submits only "
                "what is missing"
            ) from None
        yield
