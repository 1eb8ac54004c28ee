"""The run folder `runs/<project>/<run_name>/` and its single-writer lock.

Layout (design.md, "A run on disk"):
    config.yaml        the resolved config
    metrics.jsonl      one JSON object per logged step
    checkpoints/       step_<N>/ directories, each written atomically
    wandb/             W&B's files (offline runs sync from here)
    plots/             loss curve PNG written at the end of training
    run.lock           who is writing (PID, host); see `RunLock`

Only one process may write a run folder at a time. The lock is an exclusive `flock` on
`run.lock`: the kernel drops it when the holder dies (even by SIGKILL), so a lock left
by a dead process is taken over without any PID guessing, and PID reuse cannot wedge a
run. The PID and host written into the file only make the error message useful.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from models.config.configurable import Configurable
from models.names import names


def _check_name(field: str, value: str) -> None:
    # Both are single folder names: the run-name rule (a full match) keeps them inside root.
    problem = names.run_name_problem(value)
    if problem is not None:
        raise names.InvalidNameError(f"RunDirConfig.{field}: {problem}")


@dataclasses.dataclass(kw_only=True)
class RunDirConfig(Configurable["RunDirectory"]):
    """Where a run lives: `<root>/<project>/<name>/`.

    Attributes:
        project: the W&B project, also the folder grouping comparable runs.
        name: the run name, unique inside a project (also the W&B run name).
        root: the folder holding all projects.
    """

    project: str
    name: str
    root: str = "runs"

    def __post_init__(self) -> None:
        _check_name("project", self.project)
        _check_name("name", self.name)
        if not self.root:
            raise ValueError("RunDirConfig.root must be a non-empty path")

    def build(self) -> RunDirectory:
        return RunDirectory(Path(self.root) / self.project / self.name)


class RunLockedError(RuntimeError):
    """Another live process holds the run folder."""


class RunLock:
    """Exclusive, crash-safe lock on a run folder (see the module docstring)."""

    FILE_NAME = "run.lock"

    def __init__(self, run_path: Path) -> None:
        self.path = Path(run_path) / self.FILE_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunLockedError(
                    f"run folder {self.path.parent} is in use by PID {holder.get('pid', '?')} "
                    f"on host {holder.get('host', '?')} (since {holder.get('since', '?')}); "
                    "two processes must never write one run. Stop that process or pick "
                    "another run name."
                ) from None
            # A releasing holder unlinks the file before unlocking it; if we locked that
            # unlinked file, the path now names another inode: try again on the new one.
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        # We hold the lock: whatever the file says is a dead (stale) holder's record.
        record = json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlink before unlocking, so a waiting process never locks a file we then delete.
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        return {}


class RunDirectory:
    """Paths inside one run folder; `create()` makes the folders."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def wandb_dir(self) -> Path:
        return self.path / "wandb"

    @property
    def plots_dir(self) -> Path:
        return self.path / "plots"

    def create(self) -> RunDirectory:
        for folder in (self.path, self.checkpoints_dir, self.wandb_dir, self.plots_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def lock(self) -> RunLock:
        return RunLock(self.path)
