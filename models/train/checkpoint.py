"""Atomic checkpoint directories: `checkpoints/step_<N>/`.

A checkpoint is a directory of parts (`model.pt`, `optim.pt`, `trainer.pt`; training writes
the model and optimizer sharded instead, see "Sharded checkpoints" below) plus
`meta.json`. A part holds only tensors and plain values (dicts, lists, tuples, numbers,
strings, None), and is read back with `torch.load(weights_only=True)`: the run root is
writable by every job, so a file planted in a checkpoint folder must not run code when a
run resumes from it. `save` refuses a part holding anything else, naming where it is.

It is written under a temporary name in the same parent (`.tmp-step_<N>-<pid>-<random>`),
every file and the directory are fsynced, and only then is the directory renamed to
`step_<N>` (rename is atomic within one filesystem). So a process killed mid-write leaves
at most a `.tmp-*` directory, which `list_complete` never returns and `remove_incomplete`
deletes; a `step_<N>` directory is always whole. `meta.json` is written last and records
each part's size, so a part truncated or replaced later is caught before it is unpickled.

Re-saving a step moves the old `step_<N>` aside (`.tmp-replaced-step_<N>-*`) before the
new one takes its name, and deletes it only after. A crash between the two renames leaves
no `step_<N>`, but `remove_incomplete` (run before a resume) puts the old one back: at
every moment a whole copy of step N is on disk and a resume finds it.

Deleting goes the other way: rename to `.tmp-delete-*` first, then remove the files, so a
crash mid-delete never leaves a half-emptied `step_<N>`.

Sharded checkpoints (format 3, `save_sharded`): the model and optimizer state is written
by every rank with torch.distributed.checkpoint into `sharded/` (models/train/
dcp_checkpoint.py), so no rank gathers the whole model and a job of another size or
parallelism (DDP, FSDP) loads it resharded; the rest (`trainer.pt`) stays a plain part.
Atomic the same way: rank 0 picks the temporary name and tells the others, every rank
writes its shard into it, and after a barrier rank 0 writes the plain parts and meta.json
(which records every shard file's size, the world size and the parallelism) and renames.
A rank killed mid-save leaves a `.tmp-*` directory and no `step_<N>`. `load` reads a
sharded checkpoint's `model` or `optim` whole, in one process without a process group
(evaluation, conversion, comparing runs); a resume restores them into a sharded job with
`ShardedCheckpoint.restore` on every rank (`load_resumable`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import pickle
import re
import shutil
import uuid
from collections import OrderedDict
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.train import dcp_checkpoint, distributed

logger = logging.getLogger(__name__)

META_FILE = "meta.json"
TMP_PREFIX = ".tmp-"
REPLACED_PREFIX = f"{TMP_PREFIX}replaced-"
FORMAT = 2
"""meta.json's `format`: 2 = parts hold only tensors and plain values. Checkpoints without
it (format 1) kept NumPy's RNG state as an array; they still load (see `load`)."""

SHARDED_FORMAT = 3
"""meta.json's `format` of a sharded checkpoint (`save_sharded`)."""
SHARDED_DIR = "sharded"
"""The sub-folder of a sharded checkpoint holding DCP's files; also the name of the part
that `Trainer.checkpoint_parts` hands over as a `ShardedState`."""
SHARDED_PARTS = (dcp_checkpoint.MODEL_KEY, dcp_checkpoint.OPTIM_KEY)

_STEP_DIR = re.compile(r"^step_(\d+)$")
_REPLACED_DIR = re.compile(rf"^{re.escape(REPLACED_PREFIX)}(step_\d+)-[0-9a-f]+$")
_PART_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_SHARD_FILE = re.compile(r"^(\.metadata|__\d+_\d+\.distcp)$")
# Types `torch.load(weights_only=True)` rebuilds without running code of the file, matched
# exactly: a subclass (NumPy's float64 is a float, a namedtuple a tuple) pickles as its own
# class, which that load refuses.
_PLAIN_LEAVES = (str, bytes, int, float, complex, bool, type(None), torch.dtype, torch.device)
_PLAIN_SEQUENCES = (list, tuple, set, frozenset, torch.Size)


class UnreadableCheckpointError(ValueError):
    """A checkpoint directory whose meta.json or a part cannot be read back."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"checkpoint {path} cannot be loaded: {reason}")
        self.path = Path(path)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class ShardedState:
    """A model and its optimizer whose state every rank writes into a sharded checkpoint.

    `model` is the module itself, not a DDP wrapper around it (its parameter names are
    the checkpoint's keys); an FSDP2 (`fully_shard`) module writes only its own shards.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer | None = None


@dataclasses.dataclass(frozen=True)
class ShardedCheckpoint:
    """The model and optimizer state of a sharded checkpoint, checked but not yet read."""

    path: Path
    """The `sharded/` folder."""

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
        """Load the state into `model` and `optimizer` (collective: every rank calls it)."""
        dcp_checkpoint.restore(self.path, model, optimizer)


def step_dir_name(step: int) -> str:
    return f"step_{step}"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_plain(value: Any, where: str) -> None:
    """Raise TypeError unless `value` is tensors and plain values all the way down.

    `where` names `value` in the message (`trainer["rng"][0]["numpy"]`), so the caller
    learns which state to convert, at save time rather than at the next resume.
    """
    if isinstance(value, torch.Tensor) or type(value) in _PLAIN_LEAVES:
        return
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            check_plain(key, f"{where} key {key!r}")
            check_plain(item, f"{where}[{key!r}]")
        return
    if type(value) in _PLAIN_SEQUENCES:
        for index, item in enumerate(value):
            check_plain(item, f"{where}[{index}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}: checkpoint parts "
        "may hold only tensors, dicts, lists, tuples, numbers, strings and None (they are "
        "loaded with torch.load(weights_only=True)); convert it to those"
    )


def _check_part_name(name: str) -> None:
    if not isinstance(name, str) or not _PART_NAME.match(name):
        raise ValueError(f"checkpoint part name {name!r} is not a plain file name")


def _write_parts(directory: Path, parts: Mapping[str, Any]) -> dict[str, int]:
    """`torch.save` each part as `<name>.pt` in `directory`, fsynced; returns their sizes."""
    sizes = {}
    for name, obj in parts.items():
        with open(directory / f"{name}.pt", "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
            sizes[name] = os.fstat(handle.fileno()).st_size
    return sizes


def _write_meta(directory: Path, record: Mapping[str, Any]) -> None:
    with open(directory / META_FILE, "w") as handle:
        json.dump(record, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_path(directory)


def _publish(checkpoints_dir: Path, tmp: Path, final: Path) -> None:
    """Rename the finished `tmp` to `final`, replacing an existing one (module docstring)."""
    if final.exists():
        aside = checkpoints_dir / f"{REPLACED_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
        os.rename(final, aside)
        os.rename(tmp, final)
        _fsync_path(checkpoints_dir)  # the new step_<N> is durable before the old one goes
        shutil.rmtree(aside)
    else:
        os.rename(tmp, final)
        _fsync_path(checkpoints_dir)


def _new_tmp_name(final: Path) -> str:
    return f"{TMP_PREFIX}{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def save(
    checkpoints_dir: Path, step: int, parts: Mapping[str, Any], meta: Mapping[str, Any]
) -> Path:
    """Write `parts` (name -> tensors and plain values) atomically as `step_<step>`.

    Args:
        checkpoints_dir: the run's `checkpoints/` folder (created if needed).
        step: the number of completed optimizer steps the state corresponds to.
        parts: each is saved with `torch.save` as `<name>.pt` (see `check_plain`).
        meta: small JSON-able facts (step, world size, ...) written last as `meta.json`.

    Returns:
        The final directory. An existing `step_<step>` is replaced (see the module doc).
    """
    for name, obj in parts.items():
        _check_part_name(name)
        check_plain(obj, name)
    checkpoints_dir = Path(checkpoints_dir)
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    final = checkpoints_dir / step_dir_name(step)
    tmp = checkpoints_dir / _new_tmp_name(final)
    tmp.mkdir()
    sizes = _write_parts(tmp, parts)
    record = {"step": step, "format": FORMAT, "parts": sorted(parts), "sizes": sizes, **meta}
    _write_meta(tmp, record)
    _publish(checkpoints_dir, tmp, final)
    return final


def save_sharded(
    checkpoints_dir: Path,
    step: int,
    state: ShardedState,
    parts: Mapping[str, Any],
    meta: Mapping[str, Any],
) -> Path:
    """Write `state` sharded over the ranks, plus the plain `parts`, atomically as `step_<step>`.

    Collective: every rank of the default process group calls it with its own `state`
    (one process alone writes everything). `parts` and `meta` are written by rank 0 only
    (the others' are checked and dropped): give every rank the same gathered values.
    The checkpoint is published when rank 0 returns; the others return after it.
    """
    for name, obj in parts.items():
        _check_part_name(name)
        check_plain(obj, name)
        if name in (*SHARDED_PARTS, SHARDED_DIR):
            raise ValueError(f"checkpoint part name {name!r} is the sharded state's")
    checkpoints_dir = Path(checkpoints_dir)
    final = checkpoints_dir / step_dir_name(step)
    is_main = not distributed.is_active() or torch.distributed.get_rank() == 0
    tmp_name = None
    if is_main:
        checkpoints_dir.mkdir(parents=True, exist_ok=True)
        tmp_name = _new_tmp_name(final)
        (checkpoints_dir / tmp_name).mkdir()
    # The run folder is shared by every node: all ranks write into rank 0's temporary name.
    tmp = checkpoints_dir / distributed.broadcast_object(tmp_name)
    dcp_checkpoint.write(tmp / SHARDED_DIR, state.model, state.optimizer)
    distributed.barrier()  # every rank's shard is on disk before meta.json says complete
    if is_main:
        sizes = _write_parts(tmp, parts)
        sharded_root = tmp / SHARDED_DIR
        files = {file.name: file.stat().st_size for file in sorted(sharded_root.iterdir())}
        _fsync_path(sharded_root)
        written = [dcp_checkpoint.MODEL_KEY]
        if state.optimizer is not None:
            written.append(dcp_checkpoint.OPTIM_KEY)
        record = {
            "step": step,
            "format": SHARDED_FORMAT,
            "parts": sorted([*parts, *written]),
            "sizes": sizes,
            "sharded": {"dir": SHARDED_DIR, "parts": written, "files": files},
            **meta,
        }
        _write_meta(tmp, record)
        _publish(checkpoints_dir, tmp, final)
    distributed.barrier()  # nobody reads or prunes before the rename
    return final


def _step_of(path: Path) -> int | None:
    match = _STEP_DIR.match(path.name)
    return int(match.group(1)) if match else None


def list_finished(checkpoints_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every `step_<N>` whose write finished (it has a meta.json), oldest
    first, whether or not its files are readable: what a resume tries, newest first."""
    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.is_dir():
        return []
    found = []
    for path in checkpoints_dir.iterdir():
        step = _step_of(path)
        if step is not None and (path / META_FILE).is_file():
            found.append((step, path))
    return sorted(found)


def list_complete(checkpoints_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint, oldest first; temp dirs are ignored.

    One whose meta.json does not read as this step's (garbage, torn, another step's) is
    left out with a warning, so that callers can read the meta of what they get.
    """
    complete = []
    for step, path in list_finished(checkpoints_dir):
        try:
            read_meta(path)
        except UnreadableCheckpointError as error:
            logger.warning("skipping %s: %s", path, error.reason)
            continue
        complete.append((step, path))
    return complete


def latest_complete(checkpoints_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    found = list_complete(checkpoints_dir)
    return found[-1][1] if found else None


def remove_incomplete(checkpoints_dir: Path) -> list[Path]:
    """Delete leftovers of interrupted writes or deletes; returns what was removed.

    A `step_<N>` moved aside by a re-save that did not finish is renamed back instead when
    no `step_<N>` took its place (the re-save is undone, as an interrupted write is).
    """
    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.is_dir():
        return []
    removed = []
    for path in sorted(checkpoints_dir.iterdir()):
        if not path.name.startswith(TMP_PREFIX):
            continue
        replaced = _REPLACED_DIR.match(path.name)
        original = checkpoints_dir / replaced.group(1) if replaced else None
        if original is not None and not original.exists() and (path / META_FILE).is_file():
            os.rename(path, original)
            _fsync_path(checkpoints_dir)
            logger.warning("restored %s, which an interrupted re-save had moved aside", original)
            continue
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
    """The checkpoint's meta.json, checked: a JSON object of this directory's step whose
    parts are plain file names. Raises UnreadableCheckpointError otherwise."""
    path = Path(path)
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UnreadableCheckpointError(
            path, f"{META_FILE} does not read as JSON ({error})"
        ) from error
    if not isinstance(meta, dict):
        raise UnreadableCheckpointError(path, f"{META_FILE} holds a {type(meta).__name__}")
    step, parts = meta.get("step"), meta.get("parts")
    expected_step = _step_of(path)
    if not isinstance(step, int) or (expected_step is not None and step != expected_step):
        raise UnreadableCheckpointError(
            path, f"{META_FILE} says step {step!r}, the folder name step {expected_step}"
        )
    if not isinstance(parts, list) or not all(
        isinstance(name, str) and _PART_NAME.match(name) for name in parts
    ):
        raise UnreadableCheckpointError(path, f"{META_FILE} lists parts {parts!r}")
    sizes, version = meta.get("sizes", {}), meta.get("format", 1)
    if not isinstance(sizes, dict) or not isinstance(version, int):
        raise UnreadableCheckpointError(
            path, f"{META_FILE} has format {version!r} and sizes {sizes!r}"
        )
    if version > SHARDED_FORMAT:
        raise UnreadableCheckpointError(
            path, f"{META_FILE} has format {version}, newer than this code reads ({SHARDED_FORMAT})"
        )
    if version == SHARDED_FORMAT:
        sharded = meta.get("sharded")
        if not (
            isinstance(sharded, dict)
            and sharded.get("dir") == SHARDED_DIR
            and isinstance(sharded.get("parts"), list)
            and set(sharded["parts"]) <= set(parts) & set(SHARDED_PARTS)
            and isinstance(sharded.get("files"), dict)
            and all(
                isinstance(name, str) and _SHARD_FILE.match(name) and isinstance(size, int)
                for name, size in sharded["files"].items()
            )
        ):
            raise UnreadableCheckpointError(path, f"{META_FILE} describes shards {sharded!r}")
    return meta


def _sharded_parts(meta: Mapping[str, Any]) -> list[str]:
    return list(meta["sharded"]["parts"]) if meta.get("format", 1) == SHARDED_FORMAT else []


def _check_shards(path: Path, meta: Mapping[str, Any]) -> ShardedCheckpoint:
    """The sharded state of the checkpoint at `path`, after checking that every shard file
    has the size meta.json recorded and that the index unpickles with DCP's classes only."""
    root = path / SHARDED_DIR
    for name, recorded in meta["sharded"]["files"].items():
        file = root / name
        if not file.is_file():
            raise UnreadableCheckpointError(path, f"{SHARDED_DIR}/{name} is missing")
        if (actual := file.stat().st_size) != recorded:
            raise UnreadableCheckpointError(
                path,
                f"{SHARDED_DIR}/{name} has {actual} bytes, {META_FILE} recorded {recorded} "
                "(truncated or replaced after the checkpoint was written)",
            )
    if dcp_checkpoint.INDEX_FILE not in meta["sharded"]["files"]:
        raise UnreadableCheckpointError(path, f"{META_FILE} lists no {dcp_checkpoint.INDEX_FILE}")
    try:
        dcp_checkpoint.read_metadata(root)
    except dcp_checkpoint.UnsafeShardedStateError as error:
        raise UnreadableCheckpointError(
            path,
            f"{SHARDED_DIR}/{dcp_checkpoint.INDEX_FILE} was refused, none of it ran: {error}",
        ) from error
    except Exception as error:
        raise UnreadableCheckpointError(
            path,
            f"{SHARDED_DIR}/{dcp_checkpoint.INDEX_FILE} is damaged "
            f"({type(error).__name__}: {error})",
        ) from error
    return ShardedCheckpoint(root)


@contextlib.contextmanager
def _format_1_globals(meta: Mapping[str, Any]) -> Iterator[None]:
    """Format 1 pickled NumPy's RNG state as an array: allow rebuilding arrays (of plain
    dtypes; no other class, no code) for those checkpoints only."""
    if meta.get("format", 1) >= FORMAT:
        yield
        return
    array_globals = [np._core.multiarray._reconstruct, np.ndarray, np.dtype]
    array_globals += [type(np.dtype(code)) for code in ("u4", "i8", "f8")]
    with torch.serialization.safe_globals(array_globals):
        yield


def _refusal_reason(error: pickle.UnpicklingError) -> str:
    """The line of torch's weights_only refusal that says what it met (an unsupported
    global: planted code; an unsupported operand: garbage), without its boilerplate."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    said = [
        line.rpartition("your use case: ")[2]
        for line in lines[1:]
        if not line.startswith("Check the documentation")
    ]
    return " ".join(part for part in said if part) or (lines[0] if lines else repr(error))


def load(
    path: Path, map_location: torch.device | str = "cpu", parts: Collection[str] | None = None
) -> dict[str, Any]:
    """Every part of the checkpoint at `path` (or those named in `parts`), by name.

    Parts are loaded with `weights_only=True`: a part that would need any other class
    (code planted in the folder) is refused without running it. Anything wrong with the
    folder (meta.json, a missing, truncated or refused part) raises
    UnreadableCheckpointError, whose reason names the file.

    A sharded checkpoint's `model` and `optim` are read whole in this process (no process
    group; see dcp_checkpoint.read_whole): the model's state dict by parameter name as a
    plain checkpoint holds it; the optimizer's keyed by parameter name too (`get_state_dict`'s
    form, not `Optimizer.state_dict()`'s numbered one).
    """
    path = Path(path)
    meta = read_meta(path)
    wanted = meta["parts"] if parts is None else list(parts)
    if unknown := sorted(set(wanted) - set(meta["parts"])):
        raise UnreadableCheckpointError(path, f"it has no part {unknown} (parts: {meta['parts']})")
    sharded = [name for name in wanted if name in _sharded_parts(meta)]
    loaded = _load_plain(path, meta, [name for name in wanted if name not in sharded], map_location)
    if sharded:
        shards = _check_shards(path, meta)
        for name in sharded:
            try:
                loaded[name] = dcp_checkpoint.read_whole(shards.path, name)
            except pickle.UnpicklingError as error:
                raise UnreadableCheckpointError(
                    path, f"{SHARDED_DIR}/ {name} state was refused: {error}"
                ) from error
            except Exception as error:
                raise UnreadableCheckpointError(
                    path,
                    f"{SHARDED_DIR}/ does not read back its {name} state "
                    f"({type(error).__name__}: {error})",
                ) from error
            if map_location != "cpu":
                loaded[name] = _to(loaded[name], map_location)
    return {name: loaded[name] for name in wanted}


def load_resumable(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """What a resume needs of the checkpoint at `path`: every plain part, and for a sharded
    checkpoint, under `SHARDED_DIR`, its checked `ShardedCheckpoint` (read by every rank
    with `restore`) in place of `model` and `optim`. Errors as `load`'s."""
    path = Path(path)
    meta = read_meta(path)
    plain = [name for name in meta["parts"] if name not in _sharded_parts(meta)]
    loaded = _load_plain(path, meta, plain, map_location)
    if _sharded_parts(meta):
        loaded[SHARDED_DIR] = _check_shards(path, meta)
    return loaded


def part_bytes(path: Path, name: str) -> int:
    """Bytes the part `name` of the checkpoint at `path` takes whole (for a sharded part:
    the size of its tensors by the index, so nothing is loaded to learn it)."""
    path = Path(path)
    meta = read_meta(path)
    if name in _sharded_parts(meta):
        return dcp_checkpoint.tensor_bytes(_check_shards(path, meta).path, name)
    if name not in meta["parts"]:
        raise UnreadableCheckpointError(path, f"it has no part {name!r} (parts: {meta['parts']})")
    return (path / f"{name}.pt").stat().st_size


def _to(value: Any, device: torch.device | str) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: _to(item, device) for key, item in value.items()}
    if isinstance(value, list):
        return [_to(item, device) for item in value]
    return value


def _load_plain(
    path: Path, meta: Mapping[str, Any], wanted: Collection[str], map_location: Any
) -> dict[str, Any]:
    sizes = meta.get("sizes", {})
    loaded = {}
    for name in wanted:
        file = path / f"{name}.pt"
        if not file.is_file():
            raise UnreadableCheckpointError(path, f"{file.name} is missing")
        actual = file.stat().st_size
        if name in sizes and actual != sizes[name]:
            raise UnreadableCheckpointError(
                path,
                f"{file.name} has {actual} bytes, {META_FILE} recorded {sizes[name]} "
                "(truncated or replaced after the checkpoint was written)",
            )
        try:
            with _format_1_globals(meta):
                loaded[name] = torch.load(file, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as error:
            raise UnreadableCheckpointError(
                path,
                f"{file.name} was refused by torch.load(weights_only=True), which runs none "
                f"of it: {_refusal_reason(error)}",
            ) from error
        except Exception as error:  # torch raises many types for a damaged zip
            raise UnreadableCheckpointError(
                path, f"{file.name} is damaged ({type(error).__name__}: {error})"
            ) from error
    return loaded


def prune(
    checkpoints_dir: Path,
    keep_last: int,
    permanent_every: int | None,
    up_to_step: int | None = None,
) -> list[Path]:
    """Delete old checkpoints: keep the newest `keep_last` and every permanent one.

    A checkpoint is permanent when its step is a multiple of `permanent_every`; permanent
    checkpoints do not count towards `keep_last`. Checkpoints past `up_to_step` (left by
    an earlier attempt that a resume fell back from, and to be replaced when training gets
    there) neither count nor are deleted, so they cannot push out the ones the run is
    writing now. Returns the deleted paths.
    """
    if keep_last < 1:
        raise ValueError(f"prune needs keep_last >= 1, got {keep_last}")
    ephemeral = [
        path
        for step, path in list_finished(checkpoints_dir)
        if not (permanent_every and step % permanent_every == 0)
        and (up_to_step is None or step <= up_to_step)
    ]
    doomed = ephemeral[:-keep_last]
    for path in doomed:
        delete(path)
    return doomed
