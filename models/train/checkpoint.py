"""Atomic checkpoint directories: `checkpoints/step_<N>/`.

A checkpoint is a directory of torch-pickled parts (`model.pt`, `optim.pt`, ...) plus
`meta.json`. It is written under a temporary name in the same parent
(`.tmp-step_<N>-<pid>-<random>`), every file and the directory are fsynced, and only
then is the directory renamed to `step_<N>` (rename is atomic within one filesystem).
So a process killed mid-write leaves at most a `.tmp-*` directory, which `list_complete`
never returns and `remove_incomplete` deletes; a `step_<N>` directory is always whole.

Deleting goes the other way: rename to `.tmp-*` first, then remove the files, so a crash
mid-delete never leaves a half-emptied `step_<N>`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

META_FILE = "meta.json"
TMP_PREFIX = ".tmp-"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def step_dir_name(step: int) -> str:
    return f"step_{step}"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(
    checkpoints_dir: Path, step: int, parts: Mapping[str, Any], meta: Mapping[str, Any]
) -> Path:
    """Write `parts` (name -> picklable object) atomically as `step_<step>`.

    Args:
        checkpoints_dir: the run's `checkpoints/` folder (created if needed).
        step: the number of completed optimizer steps the state corresponds to.
        parts: each is saved with `torch.save` as `<name>.pt`.
        meta: small JSON-able facts (step, world size, ...) written last as `meta.json`.

    Returns:
        The final directory. An existing `step_<step>` is replaced.
    """
    checkpoints_dir = Path(checkpoints_dir)
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    final = checkpoints_dir / step_dir_name(step)
    tmp = checkpoints_dir / f"{TMP_PREFIX}{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    for name, obj in parts.items():
        with open(tmp / f"{name}.pt", "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
    with open(tmp / META_FILE, "w") as handle:
        json.dump({"step": step, "parts": sorted(parts), **meta}, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_path(tmp)
    if final.exists():
        delete(final)
    os.rename(tmp, final)
    _fsync_path(checkpoints_dir)
    return final


def _step_of(path: Path) -> int | None:
    match = _STEP_DIR.match(path.name)
    return int(match.group(1)) if match else None


def list_complete(checkpoints_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint, oldest first; temp dirs are ignored."""
    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.is_dir():
        return []
    found = []
    for path in checkpoints_dir.iterdir():
        step = _step_of(path)
        if step is not None and (path / META_FILE).is_file():
            found.append((step, path))
    return sorted(found)


def latest_complete(checkpoints_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    found = list_complete(checkpoints_dir)
    return found[-1][1] if found else None


def remove_incomplete(checkpoints_dir: Path) -> list[Path]:
    """Delete leftovers of interrupted writes or deletes; returns what was removed."""
    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.is_dir():
        return []
    removed = []
    for path in checkpoints_dir.iterdir():
        if path.name.startswith(TMP_PREFIX):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def delete(path: Path) -> None:
    """Remove a checkpoint so that no crash can leave it half deleted under its name."""
    path = Path(path)
    doomed = path.with_name(f"{TMP_PREFIX}delete-{path.name}-{uuid.uuid4().hex[:8]}")
    os.rename(path, doomed)
    shutil.rmtree(doomed)


def read_meta(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / META_FILE).read_text())


def load(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """Every part of the checkpoint at `path`, by name.

    `weights_only=False`: the parts hold our own non-tensor state (RNG tuples, NumPy
    arrays, data-loader positions); only load checkpoints this code wrote.
    """
    path = Path(path)
    return {
        name: torch.load(path / f"{name}.pt", map_location=map_location, weights_only=False)
        for name in read_meta(path)["parts"]
    }


def prune(checkpoints_dir: Path, keep_last: int, permanent_every: int | None) -> list[Path]:
    """Delete old checkpoints: keep the newest `keep_last` and every permanent one.

    A checkpoint is permanent when its step is a multiple of `permanent_every`; permanent
    checkpoints do not count towards `keep_last`. Returns the deleted paths.
    """
    if keep_last < 1:
        raise ValueError(f"prune needs keep_last >= 1, got {keep_last}")
    ephemeral = [
        path
        for step, path in list_complete(checkpoints_dir)
        if not (permanent_every and step % permanent_every == 0)
    ]
    doomed = ephemeral[:-keep_last]
    for path in doomed:
        delete(path)
    return doomed
