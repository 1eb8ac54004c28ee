"""Reads offline W&B runs (`wandb/offline-run-*/run-<id>.wandb`) without a W&B server.

An offline run keeps its history, config and summary only in the `.wandb` transaction log
(its `files/` folder holds just requirements.txt). wandb >= 0.19 writes that log from its Go
core and no longer ships a Python reader, so this module reads the format itself:

    file    := header block*
    header  := ident ":W&B" (4 bytes), magic 0xBEE1 (uint16 LE), version 0 (uint8)
    block   := 32 KiB of records; fewer than 7 bytes left in a block are zero padding
    record  := crc (uint32 LE), length (uint16 LE), type (uint8), data[length]
               crc = zlib.crc32(data, zlib.crc32(bytes([type]))); type 1 = FULL,
               2 = FIRST, 3 = MIDDLE, 4 = LAST (a payload split across blocks)

(the LevelDB log format with W&B's header and an IEEE CRC). Each payload is a protobuf
`wandb.proto.wandb_internal_pb2.Record`; we use its `run` (id, project, name, initial config),
`config` (updates), `history` (one row per step) and `summary` records. A torn tail (a run
killed mid-write) ends the read at the last whole record.
"""

from __future__ import annotations

import dataclasses
import json
import re
import struct
import time
import zlib
from pathlib import Path
from typing import Any

HEADER = struct.Struct("<4sHB")
RECORD_HEADER = struct.Struct("<IHB")
IDENT = b":W&B"
MAGIC = 0xBEE1
BLOCK_SIZE = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class WandbFormatError(ValueError):
    """The file is not a W&B transaction log this reader understands."""


def read_payloads(path: str | Path) -> list[bytes]:
    """The whole record payloads of a `.wandb` file, in order (see the module docstring)."""
    data = Path(path).read_bytes()
    if len(data) < HEADER.size:
        raise WandbFormatError(f"{path} is too short to be a W&B log")
    ident, magic, version = HEADER.unpack_from(data, 0)
    if ident != IDENT or magic != MAGIC or version != 0:
        raise WandbFormatError(
            f"{path}: header {ident!r}/{magic:#x}/v{version} is not a W&B log "
            f"(expected {IDENT!r}/{MAGIC:#x}/v0)"
        )
    payloads: list[bytes] = []
    pending: bytes | None = None
    position = HEADER.size
    while position + RECORD_HEADER.size <= len(data):
        left_in_block = BLOCK_SIZE - position % BLOCK_SIZE
        if left_in_block < RECORD_HEADER.size:
            position += left_in_block  # trailer padding
            continue
        checksum, length, kind = RECORD_HEADER.unpack_from(data, position)
        start = position + RECORD_HEADER.size
        chunk = data[start : start + length]
        if kind == 0 and length == 0:
            break  # zero fill after the last record
        if len(chunk) < length or zlib.crc32(chunk, zlib.crc32(bytes([kind]))) != checksum:
            break  # torn or corrupt tail: keep what was whole
        position = start + length
        if kind == FULL:
            payloads.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE and pending is not None:
            pending += chunk
        elif kind == LAST and pending is not None:
            payloads.append(pending + chunk)
            pending = None
        else:
            break
    return payloads


@dataclasses.dataclass
class WandbRun:
    """What a `.wandb` log holds that a comparison needs.

    Attributes:
        run_id, project, name: the run's identity.
        group, job_type, notes: the study, variant and hypothesis of a study's run ("" when
            the run set none).
        config: the config as nested plain data (W&B's `_wandb` entry removed).
        history: one dict per logged step (`_step` included), keys as logged.
        summary: the last summary values.
        finished: the log holds W&B's "exit" record, written after everything the run
            logged (False: still being written, or the process died).
    """

    run_id: str
    project: str
    name: str
    config: dict[str, Any]
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    finished: bool = False
    group: str = ""
    job_type: str = ""
    notes: str = ""


def _item_key(item: Any) -> str:
    # wandb >= 0.17 writes `nested_key` (a path), older versions a flat `key`.
    return "/".join(item.nested_key) if item.nested_key else item.key


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def read_run(path: str | Path) -> WandbRun:
    """Parses one `.wandb` file (needs the `wandb` package for its protobuf classes)."""
    from wandb.proto import wandb_internal_pb2  # the format's schema

    run = WandbRun(run_id="", project="", name="", config={}, history=[], summary={})
    for payload in read_payloads(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id = record.run.run_id
            run.project = record.run.project
            run.name = record.run.display_name or record.run.run_id
            run.group = record.run.run_group
            run.job_type = record.run.job_type
            run.notes = record.run.notes
            for item in record.run.config.update:
                run.config[_item_key(item)] = _value(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                run.config[_item_key(item)] = _value(item.value_json)
        elif kind == "history":
            row = {_item_key(item): _value(item.value_json) for item in record.history.item}
            if record.history.HasField("step") and "_step" not in row:
                row["_step"] = record.history.step.num
            run.history.append(row)
        elif kind == "summary":
            for item in record.summary.update:
                run.summary[_item_key(item)] = _value(item.value_json)
        elif kind == "exit":
            run.finished = True
    run.config.pop("_wandb", None)
    return run


def read_finished_run(path: str | Path, timeout_s: float = 30.0, poll_s: float = 0.5) -> WandbRun:
    """`read_run` once the log is finished, for a reader that has just called
    `wandb.finish()`: W&B's writer process may still be flushing when finish() returns.
    After `timeout_s`, the run as it is then (check `.finished`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        run = read_run(path)
        if run.finished or time.monotonic() >= deadline:
            return run
        time.sleep(poll_s)


def offline_run_files(folder: str | Path) -> list[Path]:
    """The `.wandb` logs under `folder` (a run folder, its wandb/, or an offline-run-*)."""
    folder = Path(folder)
    patterns = ("run-*.wandb", "offline-run-*/run-*.wandb", "wandb/offline-run-*/run-*.wandb")
    found: list[Path] = []
    for pattern in patterns:
        found.extend(folder.glob(pattern))
    return sorted(set(found), key=_attempt_order)


_SEGMENT_FOLDER = re.compile(r"^offline-run-(\d{8}_\d{6})-(.+?)(?:-(\d+))?$")


def _attempt_order(log: Path) -> tuple:
    """Oldest attempt first: by the start second in the folder name, then the number W&B
    appends (`-1`, `-2`, ...) when a resumed attempt starts within the same second. A plain
    path sort puts `...-<id>-1/` before `...-<id>/` ('-' sorts before '/')."""
    match = _SEGMENT_FOLDER.match(log.parent.name)
    if match is None:
        return (str(log.parent), "", 0, str(log))
    started, run_id, attempt = match.groups()
    return (str(log.parent.parent), started, int(attempt or 0), run_id, str(log))
