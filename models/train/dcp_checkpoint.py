"""Model and optimizer state as sharded files, written and read with torch.distributed.checkpoint.

Every rank writes its own shard of the state (`__<rank>_0.distcp`) and rank 0 the index
(`.metadata`), with `dcp.save`. The state is taken with `get_state_dict(model, optimizer)`,
which names every tensor by its fully-qualified parameter name without wrapper prefixes
(`encoder.blocks.0.attn.qkv.weight`, the optimizer's state under the same names) for a
plain module, the module a DDP wrapper holds and a `fully_shard`-ed (FSDP2) one alike. The
index records which slice of each whole tensor every file holds, so `dcp.load` gives each
rank of the reading job the slices it needs whatever the writer's layout: 2 ranks -> 1 -> 2,
DDP -> FSDP and back, reshard on load.

Reading is kept from running code of the files, like `torch.load(weights_only=True)` for
the plain parts of a checkpoint (models/train/checkpoint.py): a planted file must not run
code when a run resumes or a checkpoint is evaluated. DCP itself reads tensors with
`weights_only=True`, but the index with `pickle.load` and each non-tensor value (the
optimizer's learning rate, betas, ...) with `torch.load(weights_only=False)`; here the
index is unpickled with only DCP's own metadata classes allowed (`read_metadata`) and
non-tensor values with `weights_only=True` (`SafeLoadPlanner`). Anything else is refused
with `UnsafeShardedStateError` before it runs.
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import pickle
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import metadata as dcp_metadata
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint.planner import ReadItem
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

MODEL_KEY = "model"
OPTIM_KEY = "optim"
INDEX_FILE = ".metadata"
"""The index rank 0 writes last: DCP's name for it."""


class UnsafeShardedStateError(pickle.UnpicklingError):
    """A sharded state file that would need a class or function outside DCP's metadata."""


# What DCP's `.metadata` pickle names (torch 2.13): its metadata dataclasses, the storage
# record of the file writer, torch.Size, dtypes, layouts (by name) and the memory-format enum.
_METADATA_CLASSES = {
    ("torch.distributed.checkpoint.metadata", name): getattr(dcp_metadata, name)
    for name in (
        "Metadata",
        "MetadataIndex",
        "TensorStorageMetadata",
        "BytesStorageMetadata",
        "ChunkStorageMetadata",
        "TensorProperties",
        "StorageMeta",
        "_MEM_FORMAT_ENCODING",
    )
}
_METADATA_CLASSES[("torch.distributed.checkpoint.filesystem", "_StorageInfo")] = (
    torch.distributed.checkpoint.filesystem._StorageInfo
)
_METADATA_CLASSES[("torch", "Size")] = torch.Size
_METADATA_CLASSES[("collections", "OrderedDict")] = dict
# The writer's checkpoint_id (the folder it wrote to): a pure path does no file operation.
_METADATA_CLASSES[("pathlib", "PosixPath")] = pathlib.PurePosixPath


def _layout_by_name(name: str) -> torch.layout:
    layout = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(layout, torch.layout):
        raise UnsafeShardedStateError(f"{name!r} is not a torch layout")
    return layout


def _enum_member(owner: Any, name: str) -> Any:
    """The pickle's `getattr(_MEM_FORMAT_ENCODING, name)`, and no other getattr: a free
    getattr reaches any module's globals from an allowed function."""
    if owner is not dcp_metadata._MEM_FORMAT_ENCODING or name not in owner.__members__:
        raise UnsafeShardedStateError(f"getattr({owner!r}, {name!r}) is not a DCP enum member")
    return owner[name]


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _METADATA_CLASSES:
            return _METADATA_CLASSES[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if (module, name) == ("torch.serialization", "_get_layout"):
            return _layout_by_name
        if (module, name) == ("builtins", "getattr"):
            return _enum_member
        raise UnsafeShardedStateError(
            f"{INDEX_FILE} names {module}.{name}, which is not one of DCP's metadata classes"
        )


def read_metadata(directory: Path) -> dcp_metadata.Metadata:
    """The index of the sharded state in `directory`, unpickled with DCP's classes only."""
    with open(Path(directory) / INDEX_FILE, "rb") as handle:
        metadata = _MetadataUnpickler(handle).load()
    if not isinstance(metadata, dcp_metadata.Metadata):
        raise UnsafeShardedStateError(f"{INDEX_FILE} holds a {type(metadata).__name__}")
    if metadata.storage_meta is None:
        metadata.storage_meta = dcp_metadata.StorageMeta()
    return metadata


class SafeFileSystemReader(FileSystemReader):
    """DCP's file reader with the index read by `read_metadata`."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> dcp_metadata.Metadata:
        if kwargs.get("rank") is not None:  # per-rank index files: not written here
            raise UnsafeShardedStateError("per-rank metadata files are not read")
        metadata = read_metadata(Path(self.path))
        metadata.storage_meta.load_id = self.load_id
        return metadata


class SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's load planner with non-tensor values read by `torch.load(weights_only=True)`."""

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        try:
            loaded = torch.load(value, weights_only=True)
        except pickle.UnpicklingError as error:
            raise UnsafeShardedStateError(
                f"the value of {read_item.dest_index.fqn} was refused by "
                f"torch.load(weights_only=True), which runs none of it: {error}"
            ) from error
        if self.flatten_state_dict:
            target = self.original_state_dict
            path = self.mappings[read_item.dest_index.fqn]
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = loaded
        else:
            self.state_dict[read_item.dest_index.fqn] = loaded


def _collective() -> bool:
    """Whether DCP coordinates over the default process group (else: this process alone)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@contextlib.contextmanager
def _plain_errors() -> Iterator[None]:
    """DCP's CheckpointException (a BaseException, so `except Exception` misses it) as the
    error a rank raised: UnsafeShardedStateError when a planted value was refused, else a
    RuntimeError with DCP's per-rank tracebacks."""
    try:
        yield
    except CheckpointException as error:
        for raised, _ in error.failures.values():
            if isinstance(raised, UnsafeShardedStateError):
                raise raised from None
        raise RuntimeError(f"torch.distributed.checkpoint failed: {error}") from None


@contextlib.contextmanager
def _alone_without_warning() -> Iterator[None]:
    """DCP warns on every call without a process group that it assumes one process: that is
    the intent here (a single-process run, or reading a checkpoint in one process)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _state(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    if optimizer is None:
        return {MODEL_KEY: get_model_state_dict(model)}
    model_state, optim_state = get_state_dict(model, optimizer)
    return {MODEL_KEY: model_state, OPTIM_KEY: optim_state}


def write(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """Write `model`'s and `optimizer`'s state into `directory`. Collective: every rank of
    the default process group calls it (a single process writes alone)."""
    writer = FileSystemWriter(Path(directory), sync_files=True, overwrite=False)
    with _plain_errors(), _alone_without_warning():
        dcp.save(_state(model, optimizer), storage_writer=writer, no_dist=not _collective())


def restore(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """Load the state in `directory` into `model` and `optimizer`, resharded for this job.
    Collective, like `write`; each rank reads only the slices it holds."""
    read_metadata(Path(directory))  # refused here, before DCP reads it (and hides why)
    state = _state(model, optimizer)
    with _plain_errors(), _alone_without_warning():
        dcp.load(
            state,
            storage_reader=SafeFileSystemReader(Path(directory)),
            planner=SafeLoadPlanner(),
            no_dist=not _collective(),
        )
    if optimizer is None:
        set_model_state_dict(model, state[MODEL_KEY])
    else:
        set_state_dict(
            model, optimizer, model_state_dict=state[MODEL_KEY], optim_state_dict=state[OPTIM_KEY]
        )


def restore_whole(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    model_state: Mapping[str, Any],
    optimizer_state: Mapping[str, Any] | None,
) -> None:
    """Load a whole state into `model` and `optimizer`, which may be sharded (FSDP2): every
    rank passes the same complete tensors and keeps its own slices.

    The state is what one process's `model.state_dict()` and `optimizer.state_dict()` hold
    (the plain checkpoints of format 2, written before sharded ones). The optimizer's is
    numbered; `_by_name` names it for torch's loader.
    """
    options = StateDictOptions(full_state_dict=True)
    if optimizer is None or optimizer_state is None:
        set_model_state_dict(model, dict(model_state), options=options)
        return
    set_state_dict(
        model,
        optimizer,
        model_state_dict=dict(model_state),
        optim_state_dict=_by_name(model, optimizer, optimizer_state),
        options=options,
    )


def _by_name(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: Mapping[str, Any]
) -> dict[str, Any]:
    """`Optimizer.state_dict()`'s numbered state keyed by parameter name: number i of group g
    is the i-th parameter of `optimizer`'s group g (a model built from the same config gives
    its optimizer the same parameters in the same order)."""
    names = {parameter: name for name, parameter in model.named_parameters()}
    saved_groups = state["param_groups"]
    if len(saved_groups) != len(optimizer.param_groups) or any(
        len(saved["params"]) != len(current["params"])
        for saved, current in zip(saved_groups, optimizer.param_groups, strict=True)
    ):
        raise ValueError(
            "the checkpoint's optimizer has parameter groups of "
            f"{[len(group['params']) for group in saved_groups]} parameters, this one of "
            f"{[len(group['params']) for group in optimizer.param_groups]}: build the model "
            "from the config the checkpoint was written with"
        )
    by_name: dict[str, Any] = {}
    groups = []
    for saved, current in zip(saved_groups, optimizer.param_groups, strict=True):
        fqns = [names[parameter] for parameter in current["params"]]
        for number, fqn in zip(saved["params"], fqns, strict=True):
            if number in state["state"]:
                by_name[fqn] = state["state"][number]
        groups.append({**saved, "params": fqns})
    return {"state": by_name, "param_groups": groups}


def _unflatten(flat: Mapping[str, Any], paths: Mapping[str, tuple]) -> dict[str, Any]:
    """`flat` (DCP's dotted keys) nested again along the index's key paths; integer path
    steps are list positions (the optimizer's param_groups)."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        path = tuple(paths.get(key, (key,)))
        target: Any = nested
        for step, following in zip(path[:-1], path[1:], strict=True):
            empty: Any = [] if isinstance(following, int) else {}
            if isinstance(target, list):
                target.extend([None] * (step + 1 - len(target)))
                if target[step] is None:
                    target[step] = empty
            else:
                target.setdefault(step, empty)
            target = target[step]
        if isinstance(target, list):
            target.extend([None] * (path[-1] + 1 - len(target)))
        target[path[-1]] = value
    return nested


def _entries(metadata: dcp_metadata.Metadata, key: str) -> dict[str, Any]:
    paths = metadata.planner_data or {}
    return {
        flat: entry
        for flat, entry in metadata.state_dict_metadata.items()
        if tuple(paths.get(flat, (flat,)))[0] == key
    }


def read_whole(directory: Path, key: str = MODEL_KEY) -> dict[str, Any]:
    """The whole (unsharded) state under `key` ("model": the model's state dict by parameter
    name; "optim": the optimizer's, by parameter name), read in this process alone: no
    process group is needed, and one that exists is not used."""
    directory = Path(directory)
    metadata = read_metadata(directory)
    entries = _entries(metadata, key)
    if not entries:
        raise KeyError(f"the sharded state in {directory} has no {key!r} entries")
    flat: dict[str, Any] = {}
    for name, entry in entries.items():
        if isinstance(entry, dcp_metadata.TensorStorageMetadata):
            flat[name] = torch.empty(entry.size, dtype=entry.properties.dtype)
        else:
            flat[name] = None  # filled by SafeLoadPlanner.load_bytes
    planner = SafeLoadPlanner(flatten_state_dict=False, allow_partial_load=True)
    with _plain_errors(), _alone_without_warning():
        dcp.load(
            flat, storage_reader=SafeFileSystemReader(directory), planner=planner, no_dist=True
        )
    # The planner reads into its own copy of the mapping (the values are filled in there).
    nested = _unflatten(planner.state_dict, metadata.planner_data or {})
    return nested[key]


def tensor_bytes(directory: Path, key: str = MODEL_KEY) -> int:
    """Bytes of the whole tensors under `key`, from the index alone (nothing is loaded)."""
    total = 0
    for entry in _entries(read_metadata(Path(directory)), key).values():
        if isinstance(entry, dcp_metadata.TensorStorageMetadata):
            total += entry.size.numel() * entry.properties.dtype.itemsize
    return total
